// den-spawn: starts the agent's pipe processes from a small process instead of the agent's Node process.
//
// Why: inside gVisor a fork copies the parent's whole address space description, and the agent's Node process is
// large (~1 GB of reserved mappings), so every exec paid ~20-40 ms in fork alone. A vfork from this ~1 MB static
// process costs a few ms (measured on the den hosts: fork+exec+wait of /bin/true 4-7 ms here, 17-45 ms from Node).
//
// Protocol (all integers little-endian u32; the agent is the only client):
//   argv[1]  path of a Unix socket this process listens on (in a root-only directory)
//   stdin    requests: len, id, uid, gid, argc, envc, then NUL-terminated file, cwd, argv..., env... (len counts
//            everything after itself). argc 0xffffffff cancels id (its stream connections are closed).
//   socket   per request three connections (stdin, stdout, stderr of the child), each starting with id, stream
//   stdout   events of 12 bytes: kind, id-or-pid, value
//              0 ready (listening), 1 started (id, pid), 2 failed (id, errno), 3 exited (pid, wait status)
// The child gets its own session (pgid = pid), the three connections as fds 0-2, cwd, no supplementary groups, gid
// and uid, default signal dispositions and an empty signal mask, exactly like Node's spawn with `detached`.
// It exits when stdin closes (the agent ended); children keep running in their own sessions.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_PENDING 512
#define CANCEL 0xffffffffu

struct request {
  uint32_t id;
  char *msg;  // the request after its length, NULL until it arrived
  uint32_t len;
  int fds[3];
  struct request *next;
};

static struct request *requests;
static int pending[MAX_PENDING];  // accepted connections waiting for their header
static int npending;

static void emit(uint32_t kind, uint32_t id, int32_t value) {
  uint32_t ev[3] = {kind, id, (uint32_t)value};
  const char *p = (const char *)ev;
  size_t left = sizeof ev;
  while (left > 0) {
    ssize_t n = write(1, p, left);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) _exit(0);  // the agent is gone
    p += n;
    left -= (size_t)n;
  }
}

static struct request *find(uint32_t id, int create) {
  for (struct request *r = requests; r; r = r->next)
    if (r->id == id) return r;
  if (!create) return NULL;
  struct request *r = calloc(1, sizeof *r);
  if (!r) abort();
  r->id = id;
  r->fds[0] = r->fds[1] = r->fds[2] = -1;
  r->next = requests;
  requests = r;
  return r;
}

static void drop(struct request *r) {
  for (struct request **p = &requests; *p; p = &(*p)->next) {
    if (*p == r) {
      *p = r->next;
      break;
    }
  }
  for (int i = 0; i < 3; i++)
    if (r->fds[i] >= 0) close(r->fds[i]);
  free(r->msg);
  free(r);
}

// Written by the vfork child (which shares this memory) when it cannot exec.
static volatile int child_errno;

static void launch(struct request *r) {
  uint32_t *h = (uint32_t *)r->msg;  // id, uid, gid, argc, envc
  uint32_t uid = h[1], gid = h[2], argc = h[3], envc = h[4];
  char *s = r->msg + 5 * 4, *end = r->msg + r->len;
  char **argv = calloc(argc + 1, sizeof *argv), **envp = calloc(envc + 1, sizeof *envp);
  if (!argv || !envp) abort();
  char *file = s;
  s += strnlen(s, (size_t)(end - s)) + 1;
  char *cwd = s;
  s += strnlen(s, (size_t)(end - s)) + 1;
  for (uint32_t i = 0; i < argc && s < end; i++, s += strnlen(s, (size_t)(end - s)) + 1) argv[i] = s;
  for (uint32_t i = 0; i < envc && s < end; i++, s += strnlen(s, (size_t)(end - s)) + 1) envp[i] = s;
  if (s > end || argc == 0 || !argv[argc - 1] || (envc > 0 && !envp[envc - 1])) {
    emit(2, r->id, EINVAL);
    goto out;
  }
  child_errno = 0;
  pid_t pid = vfork();
  if (pid == 0) {
    // Only raw system calls from here: this child shares the parent's memory until execve.
    sigset_t none;
    sigemptyset(&none);
    if (syscall(SYS_setsid) < 0) goto fail;
    for (int i = 0; i < 3; i++)
      if (syscall(SYS_dup2, r->fds[i], i) < 0) goto fail;
    if (syscall(SYS_chdir, cwd) < 0) goto fail;
    syscall(SYS_setgroups, 0, NULL);  // fails when not root; then uid/gid must already match (as in Node)
    if (syscall(SYS_setgid, gid) < 0) goto fail;
    if (syscall(SYS_setuid, uid) < 0) goto fail;
    syscall(SYS_rt_sigprocmask, SIG_SETMASK, &none, NULL, sizeof(uint64_t));
    syscall(SYS_execve, file, argv, envp);
  fail:
    child_errno = errno ? errno : EINVAL;
    syscall(SYS_exit, 127);
  }
  if (pid < 0) {
    emit(2, r->id, errno);
  } else if (child_errno != 0) {
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    emit(2, r->id, child_errno);
  } else {
    emit(1, r->id, pid);
  }
out:
  free(argv);
  free(envp);
  drop(r);
}

static void maybe_launch(struct request *r) {
  if (r->msg && r->fds[0] >= 0 && r->fds[1] >= 0 && r->fds[2] >= 0) launch(r);
}

static char *inbuf;
static size_t inlen, incap;

// Parses every complete request in the input buffer.
static void parse_requests(void) {
  size_t off = 0;
  while (inlen - off >= 8) {
    uint32_t len, id;
    memcpy(&len, inbuf + off, 4);
    if (len < 20 && len != 8) _exit(2);  // protocol error: the agent and this binary disagree
    if (inlen - off - 4 < len) break;
    memcpy(&id, inbuf + off + 4, 4);
    uint32_t argc = 0;
    if (len >= 20) memcpy(&argc, inbuf + off + 16, 4);
    if (len == 8) {
      // id + CANCEL
      struct request *r = find(id, 0);
      if (r) drop(r);
    } else {
      (void)argc;
      struct request *r = find(id, 1);
      r->msg = malloc(len + 1);
      if (!r->msg) abort();
      memcpy(r->msg, inbuf + off + 4, len);
      r->msg[len] = 0;  // a final NUL, so a truncated string list cannot run past the buffer
      r->len = len;
      maybe_launch(r);
    }
    off += 4 + len;
  }
  memmove(inbuf, inbuf + off, inlen - off);
  inlen -= off;
}

static void read_requests(void) {
  if (incap - inlen < 65536) {
    incap = incap * 2 + 65536;
    inbuf = realloc(inbuf, incap);
    if (!inbuf) abort();
  }
  ssize_t n = read(0, inbuf + inlen, incap - inlen);
  if (n == 0) _exit(0);  // the agent ended
  if (n < 0) {
    if (errno == EINTR || errno == EAGAIN) return;
    _exit(0);
  }
  inlen += (size_t)n;
  parse_requests();
}

// The header of an accepted stream connection: which request and which of its stdio streams it is.
static void read_header(int fd) {
  uint32_t hdr[2];
  ssize_t n;
  do n = recv(fd, hdr, sizeof hdr, MSG_WAITALL);
  while (n < 0 && errno == EINTR);
  if (n != (ssize_t)sizeof hdr || hdr[1] > 2) {
    close(fd);
    return;
  }
  struct request *r = find(hdr[0], 1);
  if (r->fds[hdr[1]] >= 0) close(r->fds[hdr[1]]);
  r->fds[hdr[1]] = fd;
  maybe_launch(r);
}

static void reap(int sfd) {
  struct signalfd_siginfo si;
  while (read(sfd, &si, sizeof si) == (ssize_t)sizeof si) {
  }
  for (;;) {
    int status;
    pid_t pid = waitpid(-1, &status, WNOHANG);
    if (pid <= 0) break;
    emit(3, (uint32_t)pid, status);
  }
}

int main(int argc, char **argv) {
  if (argc != 2) return 2;
  // Children inherit dispositions: whatever the agent ignored is reset to the default here, once.
  for (int sig = 1; sig < NSIG; sig++) signal(sig, SIG_DFL);
  sigset_t chld;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  sigprocmask(SIG_BLOCK, &chld, NULL);
  int sfd = signalfd(-1, &chld, SFD_NONBLOCK | SFD_CLOEXEC);

  int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  if (sfd < 0 || lfd < 0 || strlen(argv[1]) >= sizeof addr.sun_path) return 3;
  strcpy(addr.sun_path, argv[1]);
  unlink(argv[1]);
  if (bind(lfd, (struct sockaddr *)&addr, sizeof addr) < 0 || chmod(argv[1], 0600) < 0 || listen(lfd, 128) < 0)
    return 4;
  fcntl(0, F_SETFD, FD_CLOEXEC);
  fcntl(1, F_SETFD, FD_CLOEXEC);
  emit(0, 0, 0);

  struct pollfd pfds[3 + MAX_PENDING];
  for (;;) {
    pfds[0] = (struct pollfd){.fd = 0, .events = POLLIN};
    pfds[1] = (struct pollfd){.fd = lfd, .events = npending < MAX_PENDING ? POLLIN : 0};
    pfds[2] = (struct pollfd){.fd = sfd, .events = POLLIN};
    for (int i = 0; i < npending; i++) pfds[3 + i] = (struct pollfd){.fd = pending[i], .events = POLLIN};
    if (poll(pfds, (nfds_t)(3 + npending), -1) < 0) {
      if (errno == EINTR) continue;
      return 5;
    }
    if (pfds[2].revents) reap(sfd);
    // Headers first: a connection's slot is reused below.
    int kept = 0, n = npending;
    for (int i = 0; i < n; i++) {
      if (pfds[3 + i].revents) read_header(pending[i]);
      else pending[kept++] = pending[i];
    }
    npending = kept;
    if (pfds[1].revents & POLLIN) {
      for (;;) {
        if (npending >= MAX_PENDING) break;
        int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) break;
        pending[npending++] = fd;
      }
    }
    if (pfds[0].revents) read_requests();
  }
}
