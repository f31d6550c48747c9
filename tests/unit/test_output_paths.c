/* test_output_paths.c — the checks made before a command's work on the
 * paths it will write (core/error.h: path_check_output, dir_check_creatable),
 * the run directory's lock (io/run_lock.h) seen from another process, and
 * the memory limit check (core/sysmem.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <ftw.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/error.h"
#include "core/sysmem.h"
#include "io/run_lock.h"

static char g_dir[64];

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) { return remove(path); }

static int setup(void **state) {
    snprintf(g_dir, sizeof g_dir, "/tmp/tau2_test_paths_XXXXXX");
    if (!mkdtemp(g_dir)) return -1;
    return 0;
}

static int teardown(void **state) {
    nftw(g_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}

/* g_dir + "/" + rel into a static buffer (one at a time) */
static const char *at(const char *rel) {
    static char buf[256];
    snprintf(buf, sizeof buf, "%s/%s", g_dir, rel);
    return buf;
}

static void touch(const char *path) {
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fclose(f);
}

static void expect_refused(int rc, const char *err, const char *want) {
    assert_int_equal(rc, -1);
    if (!strstr(err, want)) fail_msg("message '%s' lacks '%s'", err, want);
}

static void test_output_file(void **state) {
    char err[512];
    touch(at("file"));
    assert_int_equal(path_check_output(at("new.jsonl"), 0, err, sizeof err), 0);
    assert_int_equal(path_check_output(at("file"), 0, err, sizeof err), 0); /* replaced by the rename */
    expect_refused(path_check_output(g_dir, 0, err, sizeof err), err, "is a directory (expected a file name)");
    expect_refused(path_check_output(at("no/x.jsonl"), 0, err, sizeof err), err, "no: No such file");
    expect_refused(path_check_output(at("file/x.jsonl"), 0, err, sizeof err), err, "file: not a directory");
    expect_refused(path_check_output("", 0, err, sizeof err), err, "an empty path");
    /* a bare name is in the working directory; "/x"'s directory is "/" */
    assert_int_equal(path_check_output("x.jsonl", 0, err, sizeof err), 0);
    expect_refused(path_check_output("/", 0, err, sizeof err), err, "is a directory");
}

static void test_output_dir(void **state) {
    char err[512];
    touch(at("file"));
    assert_int_equal(path_check_output(g_dir, 1, err, sizeof err), 0);
    assert_int_equal(path_check_output(at("model"), 1, err, sizeof err), 0);
    assert_int_equal(path_check_output(at("model/"), 1, err, sizeof err), 0);
    expect_refused(path_check_output(at("file"), 1, err, sizeof err), err, "exists and is not a directory");
    expect_refused(path_check_output(at("a/model"), 1, err, sizeof err), err, "a: No such file");
}

static void test_dir_creatable(void **state) {
    char err[512];
    touch(at("file"));
    assert_int_equal(dir_check_creatable(g_dir, err, sizeof err), 0);
    assert_int_equal(dir_check_creatable(at("a/b/c"), err, sizeof err), 0);
    assert_int_equal(dir_check_creatable(at("a/b/c//"), err, sizeof err), 0);
    assert_int_equal(dir_check_creatable("runs/never/made", err, sizeof err), 0);
    expect_refused(dir_check_creatable(at("file"), err, sizeof err), err, "file: exists and is not a directory");
    expect_refused(dir_check_creatable(at("file/run"), err, sizeof err), err, "file: exists and is not a directory");
    expect_refused(dir_check_creatable("", err, sizeof err), err, "an empty path");
    /* nothing was made */
    struct stat st;
    assert_int_not_equal(stat(at("a"), &st), 0);
}

/* Another process tries the lock: 0 if it got it, 1 if refused naming
 * `holder` as the job that has it, 2 if refused otherwise. */
static int lock_from_child(const char *dir, const char *holder) {
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        char err[1024], want[128];
        RunLock *l = run_lock_acquire(dir, "child job", 0, err, sizeof err);
        if (l) _exit(0);
        snprintf(want, sizeof want, "is in use by another job (%s, pid ", holder);
        _exit(strstr(err, want) ? 1 : 2);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    return WEXITSTATUS(status);
}

static void test_run_lock(void **state) {
    char err[1024];
    char run[256];
    snprintf(run, sizeof run, "%s", at("run/sub"));
    RunLock *l = run_lock_acquire(run, "parent job", 0, err, sizeof err);
    assert_non_null(l); /* made the directory */
    assert_int_equal(lock_from_child(run, "parent job"), 1);
    run_lock_release(l);
    assert_int_equal(lock_from_child(run, "parent job"), 0);
    /* the child's lock went with it: taken again here */
    l = run_lock_acquire(run, "parent job", 0, err, sizeof err);
    assert_non_null(l);
    run_lock_release(l);
    /* a holder that lets go within the wait: taken */
    int ready[2];
    assert_int_equal(pipe(ready), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(ready[0]);
        RunLock *c = run_lock_acquire(run, "brief job", 0, err, sizeof err);
        if (!c) _exit(2);
        if (write(ready[1], "x", 1) != 1) _exit(3);
        usleep(1500 * 1000);
        _exit(0); /* the kernel drops the lock with the process */
    }
    close(ready[1]);
    char byte;
    assert_int_equal(read(ready[0], &byte, 1), 1); /* the child holds it */
    close(ready[0]);
    assert_int_equal(lock_from_child(run, "brief job"), 1);
    l = run_lock_acquire(run, "patient job", 5, err, sizeof err);
    if (!l) fail_msg("not taken within the wait: %s", err);
    run_lock_release(l);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    touch(at("plain"));
    char under[256];
    snprintf(under, sizeof under, "%s/plain/run", g_dir);
    assert_null(run_lock_acquire(under, "x", 0, err, sizeof err));
}

static void test_sysmem(void **state) {
    char err[512];
    double limit = sysmem_limit_bytes();
    assert_true(limit > 0); /* Linux: at least the physical size */
    assert_int_equal(sysmem_check(1024.0, "a small buffer", err, sizeof err), 0);
    expect_refused(sysmem_check(limit * 2, "a huge buffer", err, sizeof err), err,
                   "a huge buffer would take");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_output_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_output_dir, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dir_creatable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_run_lock, setup, teardown),
        cmocka_unit_test(test_sysmem),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
