/* LD_PRELOAD shim: while the file named by FERROCD_FAULT_FSYNC_TRIGGER exists, fsync(2) and
 * fdatasync(2) fail with EIO without syncing anything, as they do when a disk reports a write
 * error. Otherwise they are the C library's. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

static int armed(void) {
    const char *trigger = getenv("FERROCD_FAULT_FSYNC_TRIGGER");
    return trigger != NULL && access(trigger, F_OK) == 0;
}

int fsync(int fd) {
    static int (*real)(int);
    if (armed()) {
        errno = EIO;
        return -1;
    }
    if (real == NULL) {
        real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    }
    return real(fd);
}

int fdatasync(int fd) {
    static int (*real)(int);
    if (armed()) {
        errno = EIO;
        return -1;
    }
    if (real == NULL) {
        real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    }
    return real(fd);
}
