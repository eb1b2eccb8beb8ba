/* Run a program as if this x86-64 CPU lacked some instruction-set extensions (LD_PRELOAD).
 *
 * Why: int8 arithmetic in onnxruntime (MLAS) depends on the CPU class, and a session gets one class. Linux's
 * CPUID faulting (arch_prctl ARCH_SET_CPUID, flag "cpuid_fault") makes every CPUID instruction trap; this
 * library answers it with the real values minus the masked feature bits, so MLAS, oneDNN and OpenBLAS pick
 * the kernels they would pick on that class, and run them on this hardware. /proc/cpuinfo is filtered the
 * same way for readers of the flag list. Integer kernels give the same numbers as on a real CPU of that class
 * (same instructions); timings are this machine's, not that class's.
 *
 * M3RT_ISA_MASK = avx2 | avx512 | avx512-vnni (what to leave; everything above it is hidden).
 */
#define _GNU_SOURCE
#include <asm/prctl.h>
#include <cpuid.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#ifndef ARCH_GET_CPUID
#define ARCH_GET_CPUID 0x1011
#define ARCH_SET_CPUID 0x1012
#endif

/* Bits cleared, per register of leaf 7 (sub-leaf 0 and 1). */
static uint32_t clear7_ebx, clear7_ecx, clear7_edx, clear71_eax, clear71_edx;
static const char *hidden_flags[64];
static int n_hidden;
static int active; /* CPUID faulting is on and our handler is installed */
static int cpuinfo_fd = -1; /* a memfd holding the filtered /proc/cpuinfo */
static struct sigaction chained; /* a SIGSEGV handler the program installs after us: real faults go there */
static int (*real_sigaction)(int, const struct sigaction *, struct sigaction *);

static long set_cpuid(int enabled) { return syscall(SYS_arch_prctl, ARCH_SET_CPUID, enabled); }

static void on_segv(int sig, siginfo_t *info, void *context) {
    ucontext_t *uc = context;
    greg_t *r = uc->uc_mcontext.gregs;
    const unsigned char *ip = (const unsigned char *)r[REG_RIP];
    if (info->si_code == SI_KERNEL && ip[0] == 0x0f && ip[1] == 0xa2) { /* CPUID */
        uint32_t leaf = (uint32_t)r[REG_RAX], sub = (uint32_t)r[REG_RCX], a, b, c, d;
        set_cpuid(1);
        __cpuid_count(leaf, sub, a, b, c, d);
        set_cpuid(0);
        if (leaf == 7 && sub == 0) { b &= ~clear7_ebx; c &= ~clear7_ecx; d &= ~clear7_edx; }
        if (leaf == 7 && sub == 1) { a &= ~clear71_eax; d &= ~clear71_edx; }
        if (leaf == 0x24 && (clear71_edx & (1u << 19))) { a = b = c = d = 0; } /* AVX10 */
        r[REG_RAX] = a; r[REG_RBX] = b; r[REG_RCX] = c; r[REG_RDX] = d;
        r[REG_RIP] += 2;
        return;
    }
    if (chained.sa_flags & SA_SIGINFO) { chained.sa_sigaction(sig, info, context); return; }
    if (chained.sa_handler != SIG_DFL && chained.sa_handler != SIG_IGN) { chained.sa_handler(sig); return; }
    /* A real fault: die of it. */
    struct sigaction dfl = {0};
    dfl.sa_handler = SIG_DFL;
    real_sigaction(SIGSEGV, &dfl, NULL);
}

/* Programs (Python's faulthandler, pytest) install their own SIGSEGV handler: keep ours first, chain theirs. */
int sigaction(int sig, const struct sigaction *act, struct sigaction *old) {
    if (!real_sigaction) real_sigaction = dlsym(RTLD_NEXT, "sigaction");
    if (sig != SIGSEGV || !active) return real_sigaction(sig, act, old);
    if (old) *old = chained;
    if (act) chained = *act;
    return 0;
}

static int hidden(const char *flag, size_t len) {
    for (int i = 0; i < n_hidden; i++)
        if (strlen(hidden_flags[i]) == len && strncmp(hidden_flags[i], flag, len) == 0) return 1;
    return 0;
}

/* /proc/cpuinfo without the hidden flags, in a memfd. */
static void filter_cpuinfo(void) {
    FILE *in = fopen("/proc/cpuinfo", "r");
    if (!in) return;
    int fd = memfd_create("cpuinfo", 0);
    char line[16384], out[16384];
    while (fgets(line, sizeof line, in)) {
        if (strncmp(line, "flags", 5) != 0) { write(fd, line, strlen(line)); continue; }
        char *colon = strchr(line, ':');
        size_t o = (size_t)(colon - line) + 1;
        memcpy(out, line, o);
        for (char *p = colon + 1; *p;) {
            while (*p == ' ' || *p == '\n') p++;
            size_t len = strcspn(p, " \n");
            if (len && !hidden(p, len)) { out[o++] = ' '; memcpy(out + o, p, len); o += len; }
            p += len;
        }
        out[o++] = '\n';
        write(fd, out, o);
    }
    fclose(in);
    cpuinfo_fd = fd;
}

static int is_cpuinfo(const char *path) { return path && strcmp(path, "/proc/cpuinfo") == 0; }

static int reopen_cpuinfo(void) {
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", cpuinfo_fd);
    int (*real_open)(const char *, int, ...) = dlsym(RTLD_NEXT, "open");
    return real_open(path, O_RDONLY | O_CLOEXEC);
}

int open(const char *path, int flags, ...) {
    mode_t mode = 0;
    if (flags & (O_CREAT | O_TMPFILE)) { va_list ap; va_start(ap, flags); mode = va_arg(ap, mode_t); va_end(ap); }
    if (cpuinfo_fd >= 0 && is_cpuinfo(path)) return reopen_cpuinfo();
    int (*real)(const char *, int, ...) = dlsym(RTLD_NEXT, "open");
    return real(path, flags, mode);
}

int open64(const char *path, int flags, ...) {
    mode_t mode = 0;
    if (flags & (O_CREAT | O_TMPFILE)) { va_list ap; va_start(ap, flags); mode = va_arg(ap, mode_t); va_end(ap); }
    if (cpuinfo_fd >= 0 && is_cpuinfo(path)) return reopen_cpuinfo();
    int (*real)(const char *, int, ...) = dlsym(RTLD_NEXT, "open64");
    return real(path, flags, mode);
}

int openat(int dirfd, const char *path, int flags, ...) {
    mode_t mode = 0;
    if (flags & (O_CREAT | O_TMPFILE)) { va_list ap; va_start(ap, flags); mode = va_arg(ap, mode_t); va_end(ap); }
    if (cpuinfo_fd >= 0 && is_cpuinfo(path)) return reopen_cpuinfo();
    int (*real)(int, const char *, int, ...) = dlsym(RTLD_NEXT, "openat");
    return real(dirfd, path, flags, mode);
}

int openat64(int dirfd, const char *path, int flags, ...) {
    mode_t mode = 0;
    if (flags & (O_CREAT | O_TMPFILE)) { va_list ap; va_start(ap, flags); mode = va_arg(ap, mode_t); va_end(ap); }
    if (cpuinfo_fd >= 0 && is_cpuinfo(path)) return reopen_cpuinfo();
    int (*real)(int, const char *, int, ...) = dlsym(RTLD_NEXT, "openat64");
    return real(dirfd, path, flags, mode);
}

FILE *fopen(const char *path, const char *mode) {
    if (cpuinfo_fd >= 0 && is_cpuinfo(path)) return fdopen(reopen_cpuinfo(), "r");
    FILE *(*real)(const char *, const char *) = dlsym(RTLD_NEXT, "fopen");
    return real(path, mode);
}

FILE *fopen64(const char *path, const char *mode) {
    if (cpuinfo_fd >= 0 && is_cpuinfo(path)) return fdopen(reopen_cpuinfo(), "r");
    FILE *(*real)(const char *, const char *) = dlsym(RTLD_NEXT, "fopen64");
    return real(path, mode);
}

static void hide(const char *flag) { hidden_flags[n_hidden++] = flag; }

__attribute__((constructor)) static void start(void) {
    const char *target = getenv("M3RT_ISA_MASK");
    if (!target || !*target) return;
    /* Hidden above every target: AMX, AVX512-BF16/FP16, AVX-VNNI, AVX10. */
    clear7_edx |= (1u << 22) | (1u << 23) | (1u << 24) | (1u << 25); /* amx_bf16, avx512_fp16, amx_tile, amx_int8 */
    clear71_eax |= (1u << 4) | (1u << 5) | (1u << 21) | (1u << 23); /* avx_vnni, avx512_bf16, amx_fp16, avx_ifma */
    clear71_edx |= (1u << 4) | (1u << 5) | (1u << 8) | (1u << 19);  /* avx_vnni_int8, avx_ne_convert, amx_complex, avx10 */
    hide("amx_bf16"); hide("amx_tile"); hide("amx_int8"); hide("amx_fp16"); hide("amx_complex");
    hide("avx512_fp16"); hide("avx512_bf16"); hide("avx_vnni"); hide("avx_vnni_int8"); hide("avx_ifma");
    hide("avx_ne_convert");
    if (strcmp(target, "avx512-vnni") == 0) {
    } else if (strcmp(target, "avx512") == 0 || strcmp(target, "avx2") == 0) {
        clear7_ecx |= (1u << 11); /* avx512_vnni */
        hide("avx512_vnni");
        if (strcmp(target, "avx2") == 0) {
            /* avx512f dq ifma pf er cd bw vl; vbmi vbmi2 bitalg vpopcntdq; 4vnniw 4fmaps vp2intersect */
            clear7_ebx |= (1u << 16) | (1u << 17) | (1u << 21) | (1u << 26) | (1u << 27) | (1u << 28) |
                          (1u << 30) | (1u << 31);
            clear7_ecx |= (1u << 1) | (1u << 6) | (1u << 12) | (1u << 14);
            clear7_edx |= (1u << 2) | (1u << 3) | (1u << 8);
            static const char *avx512[] = {"avx512f", "avx512dq", "avx512ifma", "avx512pf", "avx512er",
                                           "avx512cd", "avx512bw", "avx512vl", "avx512vbmi", "avx512_vbmi2",
                                           "avx512_bitalg", "avx512_vpopcntdq", "avx512_4vnniw",
                                           "avx512_4fmaps", "avx512_vp2intersect"};
            for (size_t i = 0; i < sizeof avx512 / sizeof *avx512; i++) hide(avx512[i]);
        }
    } else {
        fprintf(stderr, "isa_mask: M3RT_ISA_MASK=%s: expected avx2, avx512 or avx512-vnni\n", target);
        _exit(2);
    }
    real_sigaction = dlsym(RTLD_NEXT, "sigaction");
    struct sigaction sa = {0};
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    if (real_sigaction(SIGSEGV, &sa, NULL) != 0 || set_cpuid(0) != 0) {
        fprintf(stderr, "isa_mask: this kernel or CPU has no CPUID faulting (arch_prctl ARCH_SET_CPUID)\n");
        _exit(2);
    }
    active = 1;
    filter_cpuinfo();
}
