import { readFileSync, type Stats, statSync } from 'node:fs';
import { DenError } from './contract.js';

export interface UserInfo {
  name: string;
  uid: number;
  gid: number;
  home: string;
  shell: string;
}

const ROOT: UserInfo = { name: 'root', uid: 0, gid: 0, home: '/root', shell: '/bin/sh' };

/**
 * A text database file (/etc/passwd, /etc/group) parsed once and re-read only when its inode, size or mtime
 * changes, so `useradd` inside the sandbox is seen without re-parsing on every exec.
 */
class CachedTable<T> {
  private key = '';
  private value: T;

  constructor(
    private readonly path: string,
    private readonly parse: (text: string) => T,
  ) {
    this.value = parse('');
  }

  get(): T {
    let st: Stats | undefined;
    try {
      st = statSync(this.path, { throwIfNoEntry: false });
    } catch {
      st = undefined;
    }
    const key = st ? `${st.ino}:${st.size}:${st.mtimeMs}` : 'missing';
    if (key !== this.key) {
      let text = '';
      try {
        text = st ? readFileSync(this.path, 'utf8') : '';
      } catch {
        text = '';
      }
      this.value = this.parse(text);
      this.key = key;
    }
    return this.value;
  }
}

interface PasswdTable {
  byName: Map<string, UserInfo>;
  byUid: Map<number, UserInfo>;
}

function parsePasswd(text: string): PasswdTable {
  const byName = new Map<string, UserInfo>();
  const byUid = new Map<number, UserInfo>();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const [name, , uidText, gidText, , home, shell] = line.split(':');
    const uid = Number(uidText);
    const gid = Number(gidText);
    if (!name || !Number.isInteger(uid) || !Number.isInteger(gid)) continue;
    const user: UserInfo = { name, uid, gid, home: home || '/', shell: shell || '/bin/sh' };
    if (!byName.has(name)) byName.set(name, user);
    if (!byUid.has(uid)) byUid.set(uid, user);
  }
  return { byName, byUid };
}

function parseGroup(text: string): Map<number, string> {
  const byGid = new Map<number, string>();
  for (const line of text.split('\n')) {
    const [name, , gidText] = line.split(':');
    const gid = Number(gidText);
    if (name && Number.isInteger(gid) && !byGid.has(gid)) byGid.set(gid, name);
  }
  return byGid;
}

/** Users and groups of the sandbox, read from its own /etc/passwd and /etc/group. */
export class UserDirectory {
  private readonly passwd: CachedTable<PasswdTable>;
  private readonly groups: CachedTable<Map<number, string>>;

  constructor(
    private readonly defaultUserName: string,
    files: { passwd: string; group: string } = { passwd: '/etc/passwd', group: '/etc/group' },
  ) {
    this.passwd = new CachedTable(files.passwd, parsePasswd);
    this.groups = new CachedTable(files.group, parseGroup);
  }

  /**
   * Resolves a user name or numeric uid; no user means the default user, or root when the image has no such user.
   * A numeric uid without a passwd entry is accepted (as `docker run --user 1234` does), with gid = uid and home /.
   */
  resolve(user: string | undefined): UserInfo {
    const table = this.passwd.get();
    if (user === undefined || user === '') {
      return table.byName.get(this.defaultUserName) ?? table.byUid.get(0) ?? ROOT;
    }
    if (/^\d+$/.test(user)) {
      const uid = Number(user);
      return table.byUid.get(uid) ?? { name: user, uid, gid: uid, home: '/', shell: '/bin/sh' };
    }
    const found = table.byName.get(user) ?? (user === 'root' ? ROOT : undefined);
    if (!found) {
      throw new DenError(
        'INVALID_ARGUMENT',
        `unknown user '${user}' in this sandbox; create it in the image (useradd ${user}) or use an existing user such as root`,
      );
    }
    return found;
  }

  userName(uid: number): string {
    return this.passwd.get().byUid.get(uid)?.name ?? String(uid);
  }

  groupName(gid: number): string {
    return this.groups.get().get(gid) ?? String(gid);
  }
}
