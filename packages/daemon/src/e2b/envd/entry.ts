import { create } from '@bufbuild/protobuf';
import { timestampFromMs } from '@bufbuild/protobuf/wkt';
import type { FileEntry } from '@den/shared';
import { type EntryInfo, EntryInfoSchema, FileType } from './gen/filesystem/filesystem_pb.js';

const TYPE: Record<FileEntry['type'], FileType> = {
  file: FileType.FILE,
  dir: FileType.DIRECTORY,
  symlink: FileType.SYMLINK,
  other: FileType.UNSPECIFIED,
};

/** den's FileEntry as envd's EntryInfo (mode = permission bits, permissions as Go's FileMode.String prints them). */
export function toEntryInfo(entry: FileEntry): EntryInfo {
  return create(EntryInfoSchema, {
    name: entry.name,
    type: TYPE[entry.type],
    path: entry.path,
    size: BigInt(entry.size),
    mode: entry.mode & 0o777,
    permissions: permissionString(entry.type, entry.mode),
    owner: entry.owner,
    group: entry.group,
    modifiedTime: timestampFromMs(Date.parse(entry.modifiedAt)),
    ...(entry.symlinkTarget !== undefined && { symlinkTarget: entry.symlinkTarget }),
  });
}

/** `drwxr-xr-x`, `-rw-r--r--`, `Lrwxrwxrwx`: the type letter Go uses, then rwx for user, group and others. */
export function permissionString(type: FileEntry['type'], mode: number): string {
  const letter = type === 'dir' ? 'd' : type === 'symlink' ? 'L' : type === 'other' ? '?' : '-';
  let out = letter;
  for (let shift = 6; shift >= 0; shift -= 3) {
    const bits = (mode >> shift) & 7;
    out += `${bits & 4 ? 'r' : '-'}${bits & 2 ? 'w' : '-'}${bits & 1 ? 'x' : '-'}`;
  }
  return out;
}
