/* A plain C program (no faultline in it) that the tests of `faultline record --libc` run.
 * `prog MODE DIR`: each mode makes a known list of libc calls on paths under DIR and prints
 * what libc returned, so the test can compare the trace with what the program saw. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;
static char path[4096];
static const char *dir;

static char path2[4096];

static const char *p(const char *name) {
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return path;
}

/* A second buffer, for calls taking two paths. */
static const char *p2(const char *name) {
    snprintf(path2, sizeof path2, "%s/%s", dir, name);
    return path2;
}

static int files(void) {
    char buf[64];
    struct stat st;
    struct statx stx;
    int fd = open(p("a.txt"), O_WRONLY | O_CREAT | O_TRUNC, 0640);
    if (write(fd, "hello, faultline\n", 17) != 17) return 1;
    pwrite(fd, "HELLO", 5, 0);
    struct iovec iov[2] = {{"abc", 3}, {"def", 3}};
    writev(fd, iov, 2);
    pwritev(fd, iov, 2, 17); /* the same bytes again: the file stays 23 bytes */
    close(fd);
    fd = open(p("a.txt"), O_RDONLY);
    ssize_t n = read(fd, buf, sizeof buf);
    pread(fd, buf, 4, 7);
    struct iovec riov[1] = {{buf, 8}};
    readv(fd, riov, 1);
    struct iovec piov[2] = {{buf, 2}, {buf + 8, 3}};
    preadv(fd, piov, 2, 0);
    fstat(fd, &st);
    close(fd);
    stat(p("a.txt"), &st);
    lstat(p("a.txt"), &st);
    int dfd = open(dir, O_RDONLY | O_DIRECTORY);
    fstatat(dfd, "a.txt", &st, 0);
    statx(dfd, "a.txt", 0, STATX_SIZE, &stx);
    openat(dfd, "missing", O_RDONLY);
    access(p("a.txt"), R_OK);
    mkdir(p("sub"), 0750);
    mkdirat(dfd, "sub2", 0700);
    int c = creat(p("b.txt"), 0600);
    close(c);
    rename(p("b.txt"), p2("c.txt"));
    renameat(dfd, "c.txt", dfd, "d.txt");
    unlink(p("d.txt"));
    unlinkat(dfd, "sub2", AT_REMOVEDIR);
    close(dfd);
    void *m = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    munmap(m, 8192);
    printf("read %zd\n", n);
    return 0;
}

static int bad(void) {
    /* Unmapped page: every libc call below fails with EFAULT and the tracer must record the
     * pointer as faulted without crashing. */
    char *bad = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    int fd = open(bad, O_RDONLY);
    printf("open %d %d\n", fd, errno);
    const char *volatile null_path = 0;
    fd = open(null_path, O_RDONLY);
    printf("open-null %d %d\n", fd, errno);
    int w = open(p("out"), O_WRONLY | O_CREAT, 0600);
    ssize_t r = write(w, bad, 100);
    printf("write %zd %d\n", r, errno);
    write(w, "some bytes", 10);
    close(w);
    int rd = open(p("out"), O_RDONLY);
    r = read(rd, bad, 100);
    printf("read %zd %d\n", r, errno);
    errno = 0;
    struct stat st;
    r = stat(bad + 1, &st);
    printf("stat %zd %d\n", r, errno);
    return 0;
}

static int procs(const char *self) {
    pid_t c = fork();
    if (c == 0) {
        close(open(p("forked-child"), O_WRONLY | O_CREAT, 0600));
        _exit(3);
    }
    int st;
    waitpid(c, &st, 0);
    printf("fork child %d status %d\n", c, WEXITSTATUS(st));
    pid_t v = vfork();
    if (v == 0) {
        char *args[] = {(char *)self, "exec", (char *)dir, NULL};
        execve(self, args, environ);
        _exit(127);
    }
    waitpid(v, &st, 0);
    printf("vfork child %d status %d\n", v, WEXITSTATUS(st));
    pid_t s;
    char *args[] = {(char *)self, "spawned", (char *)dir, NULL};
    int e = posix_spawn(&s, self, NULL, NULL, args, environ);
    waitpid(s, &st, 0);
    printf("spawn %d child %d status %d\n", e, s, WEXITSTATUS(st));
    e = execve(p("no-such-program"), args, environ);
    printf("execve-missing %d %d\n", e, errno);
    return 0;
}

static void *thread_main(void *arg) {
    char name[64];
    snprintf(name, sizeof name, "%s/thread-%ld", dir, (long)arg);
    for (int i = 0; i < 50; i++) close(open(name, O_WRONLY | O_CREAT, 0600));
    return NULL;
}

static int threads(void) {
    pthread_t t[4];
    for (long i = 0; i < 4; i++) pthread_create(&t[i], NULL, thread_main, (void *)i);
    for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    return 0;
}

static int net(void) {
    int l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    bind(l, (struct sockaddr *)&a, sizeof a);
    socklen_t len = sizeof a;
    getsockname(l, (struct sockaddr *)&a, &len);
    listen(l, 1);
    int c = socket(AF_INET, SOCK_STREAM, 0);
    connect(c, (struct sockaddr *)&a, sizeof a);
    struct sockaddr_in peer;
    socklen_t plen = sizeof peer;
    int s = accept(l, (struct sockaddr *)&peer, &plen);
    send(c, "ping", 4, 0);
    char buf[16];
    recv(s, buf, sizeof buf, 0);
    int u = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in ua = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    bind(u, (struct sockaddr *)&ua, sizeof ua);
    len = sizeof ua;
    getsockname(u, (struct sockaddr *)&ua, &len);
    sendto(u, "dgram", 5, 0, (struct sockaddr *)&ua, sizeof ua);
    struct sockaddr_in from;
    socklen_t flen = sizeof from;
    recvfrom(u, buf, sizeof buf, 0, (struct sockaddr *)&from, &flen);
    printf("port %d udp %d\n", ntohs(a.sin_port), ntohs(ua.sin_port));
    close(s); close(c); close(l); close(u);
    return 0;
}

static void on_usr1(int sig) {
    (void)sig;
    write(2, "", 0);
    close(open(p("from-handler"), O_WRONLY | O_CREAT, 0600));
}

static int sig(void) {
    signal(SIGUSR1, on_usr1);
    p("from-handler");
    raise(SIGUSR1);
    long r = syscall(SYS_getppid);
    printf("ppid %ld\n", r);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    dir = argv[2];
    const char *m = argv[1];
    if (!strcmp(m, "files")) return files();
    if (!strcmp(m, "bad")) return bad();
    if (!strcmp(m, "procs")) return procs(argv[0]);
    if (!strcmp(m, "threads")) return threads();
    if (!strcmp(m, "net")) return net();
    if (!strcmp(m, "signal")) return sig();
    if (!strcmp(m, "exec") || !strcmp(m, "spawned")) {
        close(open(p(m), O_WRONLY | O_CREAT, 0600));
        return 5;
    }
    if (!strcmp(m, "loop")) {
        long n = argc > 3 ? atol(argv[3]) : 100000;
        char buf[32] = {0};
        int fd = open("/dev/null", O_WRONLY);
        for (long i = 0; i < n; i++) write(fd, buf, sizeof buf);
        return 0;
    }
    if (!strcmp(m, "forever")) {
        int fd = open("/dev/null", O_WRONLY);
        for (;;) write(fd, "x", 1);
    }
    return 2;
}
