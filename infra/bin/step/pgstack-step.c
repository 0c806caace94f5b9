/*
 * pgstack-step: what each migration command resource of a `pulumi up` runs
 * (through infra/bin/pgstack-step). The update's own Pulumi program serves
 * its migration steps (infra/cli/session.ts): it already has the database URL
 * and pgstack loaded, so a step only hands its command line over a Unix socket
 * and relays the answer. In C because a step pays this program's start once
 * per migration: about a millisecond, where Go's runtime takes three and
 * Node.js sixty. The step carries no database URL.
 *
 * The socket and its token are found by the stack ($PGSTACK_STACK) and the
 * project folder (the step's working directory, physical path), in this
 * user's 0700 directory, read only after the same checks the serving program
 * makes before writing there (infra/core/session/folder.ts); keep in step with sessionPaths in
 * infra/core/session/identity.ts, the frames in infra/core/session/server.ts,
 * and infra/bin/step-client.js (the same client for machines without a C
 * compiler).
 *
 * Request: one line of JSON, {"token": "...", "argv": ["apply", ...]}.
 * Answer: frames <kind><length>:<bytes>, kind o (stdout), e (stderr) or
 * x (the exit code, last).
 */
#define _GNU_SOURCE /* struct ucred (SO_PEERCRED) */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#ifndef MSG_NOSIGNAL
#define MSG_NOSIGNAL 0
#endif

static void write_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      exit(1);
    }
    p += w;
    n -= (size_t)w;
  }
}

/* Prints "pgstack-step: " and the pieces (up to a NULL) as one line, and exits 1. */
static void fail(const char *first, ...) {
  char line[8192];
  size_t n = 0;
  va_list pieces;
  va_start(pieces, first);
  for (const char *piece = first; piece != NULL; piece = va_arg(pieces, const char *)) {
    size_t len = strlen(piece);
    if (n + len > sizeof line - 2) len = sizeof line - 2 - n;
    memcpy(line + n, piece, len);
    n += len;
  }
  va_end(pieces);
  line[n++] = '\n';
  write_all(2, "pgstack-step: ", 14);
  write_all(2, line, n);
  exit(1);
}

typedef struct {
  char *bytes;
  size_t len, cap;
} buffer;

static void append(buffer *b, const char *bytes, size_t len) {
  if (b->len + len > b->cap) {
    size_t cap = b->cap ? b->cap : 1024;
    while (cap < b->len + len) cap *= 2;
    char *grown = realloc(b->bytes, cap);
    if (grown == NULL) fail("out of memory", NULL);
    b->bytes = grown;
    b->cap = cap;
  }
  memcpy(b->bytes + b->len, bytes, len);
  b->len += len;
}

/* A JSON string: quotes, backslashes and control characters escaped; other bytes (UTF-8) as they are. */
static void append_json_string(buffer *b, const char *s) {
  append(b, "\"", 1);
  for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
    if (*c == '"' || *c == '\\') {
      char escaped[2] = {'\\', (char)*c};
      append(b, escaped, 2);
    } else if (*c < 0x20) {
      char escaped[7];
      snprintf(escaped, sizeof escaped, "\\u%04x", *c);
      append(b, escaped, 6);
    } else {
      append(b, (const char *)c, 1);
    }
  }
  append(b, "\"", 1);
}

/* Node.js's os.tmpdir() on POSIX, which the serving program uses. */
static const char *temp_dir(void) {
  static char dir[PATH_MAX];
  const char *names[] = {"TMPDIR", "TMP", "TEMP"};
  const char *value = "/tmp";
  for (size_t i = 0; i < 3; i++) {
    const char *v = getenv(names[i]);
    if (v != NULL && *v) {
      value = v;
      break;
    }
  }
  snprintf(dir, sizeof dir, "%s", value);
  size_t len = strlen(dir);
  if (len > 1 && dir[len - 1] == '/') dir[len - 1] = '\0';
  return dir;
}

/* FNV-1a, 64 bits: the session's name (keep in step with sessionName in identity.ts). */
static uint64_t fnv1a64(const char *parts[], size_t count) {
  uint64_t hash = 0xcbf29ce484222325ULL;
  for (size_t i = 0; i < count; i++) {
    if (i > 0) {
      hash ^= (unsigned char)'\n';
      hash *= 0x100000001b3ULL;
    }
    for (const unsigned char *c = (const unsigned char *)parts[i]; *c; c++) {
      hash ^= *c;
      hash *= 0x100000001b3ULL;
    }
  }
  return hash;
}

static const char *session_dir;

/* The session folder cannot be trusted: says why and what to do, and exits 1. */
static void refuse(const char *why, const char *more, const char *rest) {
  fail("the deploy session's folder ", session_dir, " ", why, more ? more : "", rest ? rest : "",
       ": remove it, or set XDG_RUNTIME_DIR to a folder only you can change, and run again", NULL);
}

/* A folder on the way to the session folder: root's or this user's, and no one else can rename its entries. */
static void visit(const char *folder) {
  struct stat info;
  if (lstat(folder, &info) != 0) fail("no deploy session: ", folder, " cannot be read (", strerror(errno), ")", NULL);
  if (info.st_uid != 0 && info.st_uid != getuid()) {
    char owner[64];
    snprintf(owner, sizeof owner, ", which belongs to another user (uid %u)", (unsigned)info.st_uid);
    refuse("is inside ", folder, owner);
  }
  if ((info.st_mode & 022) != 0 && (info.st_mode & S_ISVTX) == 0) refuse("is inside ", folder, ", which other users can write to and which lacks the sticky bit");
}

/*
 * Resolves rel from the physical folder at (in place) as the kernel does,
 * visiting every folder an entry is looked up in (keep in step with
 * assertSafeBase in infra/core/session/folder.ts).
 */
static void walk(char at[PATH_MAX], const char *rel, int *hops) {
  char copy[PATH_MAX], *save = NULL;
  snprintf(copy, sizeof copy, "%s", rel);
  for (char *part = strtok_r(copy, "/", &save); part != NULL; part = strtok_r(NULL, "/", &save)) {
    if (strcmp(part, ".") == 0) continue;
    if (strcmp(part, "..") == 0) {
      char *slash = strrchr(at, '/');
      if (slash == at) at[1] = '\0';
      else if (slash != NULL) *slash = '\0';
      continue;
    }
    visit(at);
    char next[PATH_MAX];
    if (snprintf(next, sizeof next, "%s%s%s", at, strcmp(at, "/") == 0 ? "" : "/", part) >= (int)sizeof next) fail("path too long: ", at, NULL);
    struct stat info;
    if (lstat(next, &info) != 0) fail("no deploy session: ", next, " cannot be read (", strerror(errno), ")", NULL);
    if (S_ISLNK(info.st_mode)) {
      if (++*hops > 40) refuse("is behind too many symlinks", NULL, NULL);
      char target[PATH_MAX];
      ssize_t n = readlink(next, target, sizeof target - 1);
      if (n < 0) fail("no deploy session: ", next, " cannot be read (", strerror(errno), ")", NULL);
      target[n] = '\0';
      if (target[0] == '/') strcpy(at, "/");
      walk(at, target, hops);
    } else {
      strcpy(at, next);
    }
  }
}

int main(int argc, char **argv) {
  if (argc == 2 && strcmp(argv[1], "--version") == 0) {
    write_all(1, "pgstack-step\n", 13);
    return 0;
  }
  const char *stack = getenv("PGSTACK_STACK");
  char wd[PATH_MAX];
  if (stack == NULL || *stack == '\0' || realpath(".", wd) == NULL) {
    fail("a migration step runs inside `pulumi up` of its stack ($PGSTACK_STACK is not set); to apply a migration by hand run `node infra/bin/pgstack.js apply <name>`", NULL);
  }

  const char *base = getenv("XDG_RUNTIME_DIR");
  if (base == NULL || *base == '\0') base = temp_dir();
  char dir[PATH_MAX], uid[32];
  snprintf(uid, sizeof uid, "%u", (unsigned)getuid());
  snprintf(dir, sizeof dir, "%s/pgstack-%s", base, uid);
  session_dir = dir;
  struct stat info;
  if (lstat(dir, &info) != 0) {
    fail("no deploy session for stack '", stack, "': ", dir, " does not exist; the migration steps run only inside `pulumi up`, whose program serves them", NULL);
  }
  /* The same rules as the serving program (infra/core/session/folder.ts). */
  char physical[PATH_MAX] = "/", start[PATH_MAX];
  int hops = 0;
  if (base[0] != '/' && getcwd(start, sizeof start) != NULL) walk(physical, start, &hops);
  walk(physical, base, &hops);
  visit(physical);
  if (S_ISLNK(info.st_mode)) refuse("is a symlink", NULL, NULL);
  if (!S_ISDIR(info.st_mode)) refuse("is not a folder", NULL, NULL);
  char detail[64];
  if (info.st_uid != getuid()) {
    snprintf(detail, sizeof detail, "%u)", (unsigned)info.st_uid);
    refuse("belongs to another user (uid ", detail, NULL);
  }
  if ((info.st_mode & 07777) != 0700) {
    snprintf(detail, sizeof detail, "%o", (unsigned)(info.st_mode & 07777));
    refuse("has mode ", detail, ", not 700");
  }
  /* Read through descriptors from here on: what was checked is what is read, whatever happens to the path. */
  int dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
  struct stat opened;
  if (dir_fd < 0 || fstat(dir_fd, &opened) != 0 || opened.st_dev != info.st_dev || opened.st_ino != info.st_ino) refuse("changed while it was checked", NULL, NULL);

  const char *parts[] = {"pgstack-deploy-v3", wd, stack};
  char name[17];
  snprintf(name, sizeof name, "%016llx", (unsigned long long)fnv1a64(parts, 3));
  char token_name[32], token_path[PATH_MAX + 64], socket_path[PATH_MAX + 64];
  snprintf(token_name, sizeof token_name, "%s.token", name);
  snprintf(token_path, sizeof token_path, "%s/%s", dir, token_name);
  snprintf(socket_path, sizeof socket_path, "%s/%s.sock", dir, name);

  char token[256];
  /* Never through a link, and only a file of this user's that no one else can read. */
  int token_fd = openat(dir_fd, token_name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK);
  if (token_fd < 0) {
    fail("no deploy session for stack '", stack, "' in ", wd, ": the migration steps run only inside `pulumi up`, whose program serves them", NULL);
  }
  struct stat token_info;
  if (fstat(token_fd, &token_info) != 0 || !S_ISREG(token_info.st_mode) || token_info.st_uid != getuid() || (token_info.st_mode & 077) != 0) {
    fail("the deploy session's token ", token_path, " is not a private file of this user: remove it and run `pulumi up` again", NULL);
  }
  ssize_t token_len = read(token_fd, token, sizeof token - 1);
  if (token_len <= 0) {
    fail("no deploy session for stack '", stack, "' in ", wd, ": the migration steps run only inside `pulumi up`, whose program serves them", NULL);
  }
  close(token_fd);
  close(dir_fd);
  while (token_len > 0 && (token[token_len - 1] == '\n' || token[token_len - 1] == ' ' || token[token_len - 1] == '\r')) token_len--;
  token[token_len] = '\0';

  struct sockaddr_un address = {.sun_family = AF_UNIX};
  /* 103: the longest the serving program accepts (macOS's sun_path holds 104 bytes with the NUL). */
  if (strlen(socket_path) > 103 || strlen(socket_path) >= sizeof address.sun_path) {
    fail("the deploy session's socket path is too long (", socket_path, "): set XDG_RUNTIME_DIR or TMPDIR to a shorter directory", NULL);
  }
  strcpy(address.sun_path, socket_path);
  int conn = socket(AF_UNIX, SOCK_STREAM, 0);
  if (conn < 0 || connect(conn, (struct sockaddr *)&address, sizeof address) != 0) {
    fail("no deploy session for stack '", stack, "' in ", wd, " (", strerror(errno), "): the update's program is gone; run `pulumi up` again", NULL);
  }
  /* The token goes only to a program of this user's (the socket's path is not held like the folder's descriptor). */
  uid_t peer_uid = (uid_t)-1;
#ifdef SO_PEERCRED
  struct ucred peer;
  socklen_t peer_len = sizeof peer;
  if (getsockopt(conn, SOL_SOCKET, SO_PEERCRED, &peer, &peer_len) == 0) peer_uid = peer.uid;
#else
  gid_t peer_gid;
  if (getpeereid(conn, &peer_uid, &peer_gid) != 0) peer_uid = (uid_t)-1;
#endif
  if (peer_uid != getuid()) {
    fail("the deploy session's socket ", socket_path, " is not served by this user: remove it and run `pulumi up` again", NULL);
  }

  buffer request = {0};
  append(&request, "{\"token\":", 9);
  append_json_string(&request, token);
  append(&request, ",\"argv\":[", 9);
  for (int i = 1; i < argc; i++) {
    if (i > 1) append(&request, ",", 1);
    append_json_string(&request, argv[i]);
  }
  append(&request, "]}\n", 3);
  for (size_t sent = 0; sent < request.len;) {
    ssize_t w = send(conn, request.bytes + sent, request.len - sent, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR) continue;
      fail("the deploy session refused the step: ", strerror(errno), NULL);
    }
    sent += (size_t)w;
  }

  /* Frames: <kind><length>:<bytes>. */
  buffer in = {0};
  size_t at = 0;
  for (;;) {
    while (at < in.len) {
      char kind = in.bytes[at];
      size_t i = at + 1, length = 0;
      while (i < in.len && in.bytes[i] >= '0' && in.bytes[i] <= '9' && length < (1u << 30)) length = length * 10 + (size_t)(in.bytes[i++] - '0');
      if (i >= in.len) break; /* the header is not complete yet */
      if ((kind != 'o' && kind != 'e' && kind != 'x') || in.bytes[i] != ':' || i == at + 1) fail("unreadable answer from the deploy session", NULL);
      if (in.len - (i + 1) < length) break; /* the body is not complete yet */
      const char *body = in.bytes + i + 1;
      if (kind == 'o') write_all(1, body, length);
      else if (kind == 'e') write_all(2, body, length);
      else {
        char code[16];
        if (length == 0 || length >= sizeof code) fail("unreadable answer from the deploy session", NULL);
        memcpy(code, body, length);
        code[length] = '\0';
        exit(atoi(code));
      }
      at = i + 1 + length;
    }
    if (at > 0) {
      memmove(in.bytes, in.bytes + at, in.len - at);
      in.len -= at;
      at = 0;
    }
    char chunk[65536];
    ssize_t got = read(conn, chunk, sizeof chunk);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) {
      fail("the deploy session ended before this step finished (the update was interrupted); the database rolled back what the step had not committed", NULL);
    }
    append(&in, chunk, (size_t)got);
  }
}
