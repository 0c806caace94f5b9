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
 * user's 0700 directory; keep in step with sessionPaths in
 * infra/core/session/identity.ts, the frames in infra/core/session/server.ts,
 * and infra/bin/step-client.js (the same client for machines without a C
 * compiler).
 *
 * Request: one line of JSON, {"token": "...", "argv": ["apply", ...]}.
 * Answer: frames <kind><length>:<bytes>, kind o (stdout), e (stderr) or
 * x (the exit code, last).
 */
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
  struct stat info;
  if (lstat(dir, &info) != 0 || !S_ISDIR(info.st_mode) || (info.st_mode & 0777) != 0700 || info.st_uid != getuid()) {
    fail("no deploy session for stack '", stack, "': ", dir, " is not a 0700 directory of this user", NULL);
  }

  const char *parts[] = {"pgstack-deploy-v3", wd, stack};
  char name[17];
  snprintf(name, sizeof name, "%016llx", (unsigned long long)fnv1a64(parts, 3));
  char token_path[PATH_MAX + 64], socket_path[PATH_MAX + 64];
  snprintf(token_path, sizeof token_path, "%s/%s.token", dir, name);
  snprintf(socket_path, sizeof socket_path, "%s/%s.sock", dir, name);

  char token[256];
  int token_fd = open(token_path, O_RDONLY);
  ssize_t token_len = token_fd < 0 ? -1 : read(token_fd, token, sizeof token - 1);
  if (token_len <= 0) {
    fail("no deploy session for stack '", stack, "' in ", wd, ": the migration steps run only inside `pulumi up`, whose program serves them", NULL);
  }
  close(token_fd);
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
