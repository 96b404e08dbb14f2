/*
 * Crash and disk-fault tests of the storage worker, with real processes and a
 * real file system:
 *  - async and sync modes: a child appends (waiting for completions) and is
 *    SIGKILLed mid-stream; after reopening, every acknowledged message is
 *    there exactly once and the log is gap-free.
 *  - memory mode: a clean close keeps everything; a crash resets the room
 *    (new epoch, empty log) instead of reusing ids that may have been lost.
 *  - a real full disk (a 2 MiB tmpfs; CI runs as root and mounts one): writes
 *    fail with -ENOSPC, nothing of them is stored, and after the file system
 *    grows the same store writes again. Where no tmpfs can be mounted the
 *    program prints "SKIP disk-full: <cause>" and exits 77 (a skip, counted
 *    as one by tools/test), even when every other check passed.
 */
#include "test_store_util.h"

#include <signal.h>
#include <sys/mount.h>
#include <sys/wait.h>

#define CRASH_WINDOW 32 /* appends in flight in the child */

static char skip_cause[256]; /* set when a case could not run here */

static void payload_for(char *buf, size_t len, uint64_t id)
{
	/* ~100 bytes so the WAL sees real traffic */
	snprintf(
	    buf, len, "crash-%llu-%.*s", (unsigned long long)id, 80,
	    "................................................................................");
}

static bool write_all(int fd, const void *p, size_t n)
{
	const char *c = p;

	while (n > 0) {
		ssize_t w = write(fd, c, n);

		if (w <= 0)
			return false;
		c += w;
		n -= (size_t)w;
	}
	return true;
}

/* The child (this program run as "child DIR MODE FD BOOT_ID_PATH FLUSH_AT"):
 * open, load the room, send the epoch and last id, then append forever
 * (bounded: 60 s or 10^6 ids), reporting each acknowledged id on the pipe. */
static void crash_child(const char *dir, enum rr_store_durability d, int out_fd,
			const char *boot_id_path, uint64_t flush_at)
{
	struct rr_store_opts o = {
	    .dir = dir,
	    .durability = d,
	    .history_size = 2000000,
	    .boot_id_path = boot_id_path,
	};
	struct rr_store *s = t_open(&o);
	struct rr_store_req load;
	static struct rr_store_req reqs[CRASH_WINDOW];
	static char payloads[CRASH_WINDOW][128];
	uint64_t next;
	time_t end = time(NULL) + 60;

	if (t_room_load(s, "crash", &load) != 0 || !write_all(out_fd, load.out.epoch, 16) ||
	    !write_all(out_fd, &load.out.last_id, 8))
		_exit(3);
	next = load.out.last_id + 1;
	while (next < 1000000 && time(NULL) < end) {
		unsigned n = 0;

		for (; n < CRASH_WINDOW; n++, next++) {
			t_req_init(&reqs[n], RR_STORE_APPEND, "crash");
			reqs[n].id = next;
			payload_for(payloads[n], sizeof(payloads[n]), next);
			reqs[n].data = payloads[n];
			reqs[n].len = (uint32_t)strlen(payloads[n]);
			if (rr_store_submit(s, &reqs[n]) != 0)
				_exit(4);
		}
		if (t_reap(n) != n)
			_exit(5);
		for (unsigned i = 0; i < n; i++) {
			if (reqs[i].res != 0)
				_exit(6);
			if (!write_all(out_fd, &reqs[i].id, sizeof(reqs[i].id)))
				_exit(7);
		}
		if (flush_at != 0 && next > flush_at) {
			/* memory mode: push what we have to SST files */
			struct rr_store_req fl;

			t_req_init(&fl, RR_STORE_FLUSH, NULL);
			if (t_run(s, &fl) != 0)
				_exit(8);
			flush_at = 0;
		}
	}
	rr_store_close(s);
	_exit(0);
}

/* Fork a child that appends to dir, kill it after `acks` acknowledgements (or
 * let it finish if clean), and return the highest acknowledged id. */
static uint64_t run_child(const char *dir, enum rr_store_durability d, uint64_t acks,
			  char epoch[17], const char *boot_id_path, uint64_t flush_at)
{
	int p[2];
	uint64_t max_acked = 0, got = 0, id;

	if (pipe(p) < 0) {
		perror("pipe");
		exit(1);
	}
	fflush(NULL);
	pid_t pid = fork();

	if (pid == 0) {
		/* a fresh program image: RocksDB's thread pools and lock table
		 * do not survive fork, so the child must not inherit them */
		char mode[16], fd[16], fl[32];

		close(p[0]);
		snprintf(mode, sizeof(mode), "%d", (int)d);
		snprintf(fd, sizeof(fd), "%d", p[1]);
		snprintf(fl, sizeof(fl), "%llu", (unsigned long long)flush_at);
		execl("/proc/self/exe", "test_store_crash", "child", dir, mode, fd,
		      boot_id_path ? boot_id_path : "-", fl, (char *)NULL);
		_exit(127);
	}
	close(p[1]);
	CHECK(read(p[0], epoch, 16) == 16);
	epoch[16] = '\0';
	CHECK(read(p[0], &max_acked, 8) == 8); /* the log's end when it started */
	while (got < acks && read(p[0], &id, sizeof(id)) == (ssize_t)sizeof(id)) {
		CHECK_EQ(id, max_acked + 1); /* acks arrive in order */
		max_acked = id;
		got++;
	}
	kill(pid, SIGKILL);
	int status = 0;

	waitpid(pid, &status, 0);
	CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	/* acks the child reported before it died are still in the pipe */
	while (read(p[0], &id, sizeof(id)) == (ssize_t)sizeof(id)) {
		CHECK_EQ(id, max_acked + 1);
		max_acked = id;
	}
	close(p[0]);
	return max_acked;
}

/* Read the whole log of `room` and check it is exactly 1..last with the
 * child's payloads. Returns the number of messages. */
static uint64_t check_log(struct rr_store *s, const char *room, uint64_t last)
{
	uint64_t after = 0, seen = 0;
	char want[128];

	for (int page = 0; page < 10000; page++) {
		struct rr_store_req rd;

		t_req_init(&rd, RR_STORE_READ_AFTER, room);
		rd.id = after;
		if (t_run(s, &rd) != 0) {
			CHECK(!"read failed");
			break;
		}
		for (uint32_t i = 0; i < rd.out.n_items; i++) {
			const struct rr_store_item *it = &rd.out.items[i];

			if (it->id != after + 1) {
				CHECK_EQ(it->id, after + 1); /* gap-free, no repeats */
				break;
			}
			payload_for(want, sizeof(want), it->id);
			CHECK(it->val_len == strlen(want) &&
			      memcmp(it->val, want, it->val_len) == 0);
			after = it->id;
			seen++;
		}
		bool more = rd.out.more && rd.out.n_items > 0;

		rr_store_req_release(&rd);
		if (!more)
			break;
	}
	CHECK_EQ(after, last);
	return seen;
}

static void test_crash(enum rr_store_durability d, uint64_t acks)
{
	char dir[256], epoch[17];
	struct rr_store_req load;

	t_tmpdir(dir, sizeof(dir), "crash");
	uint64_t acked = run_child(dir, d, acks, epoch, NULL, 0);
	struct rr_store_opts o = {.dir = dir, .durability = d, .history_size = 2000000};
	struct rr_store *s = t_open(&o);

	CHECK_EQ(t_room_load(s, "crash", &load), 0);
	CHECK(strcmp(load.out.epoch, epoch) == 0);
	CHECK(load.out.last_id >= acked);
	uint64_t n = check_log(s, "crash", load.out.last_id);

	printf("%s crash: %llu acknowledged before SIGKILL, %llu stored after reopen, "
	       "ids 1..%llu gap-free\n",
	       rr_store_durability_name(d), (unsigned long long)acked, (unsigned long long)n,
	       (unsigned long long)load.out.last_id);
	/* the log continues where it stopped */
	char p[128];

	payload_for(p, sizeof(p), load.out.last_id + 1);
	CHECK_EQ(t_append(s, "crash", load.out.last_id + 1, p), 0);
	rr_store_close(s);
	t_tmpdir_rm(dir);
}

/* memory mode: clean close keeps the log; a crash resets it. */
static void test_memory_mode(void)
{
	char dir[256], epoch[17];
	struct rr_store_req load;
	struct rr_store_opts o = {.dir = NULL, .durability = RR_STORE_MEMORY};

	t_tmpdir(dir, sizeof(dir), "mem");
	o.dir = dir;
	struct rr_store *s = t_open(&o);

	CHECK_EQ(t_room_load(s, "m", &load), 0);
	memcpy(epoch, load.out.epoch, 17);
	for (uint64_t i = 1; i <= 100; i++) {
		char p[128];

		payload_for(p, sizeof(p), i);
		CHECK_EQ(t_append(s, "m", i, p), 0);
	}
	rr_store_close(s);
	s = t_open(&o);
	CHECK_EQ(t_room_load(s, "m", &load), 0);
	CHECK(strcmp(load.out.epoch, epoch) == 0);
	CHECK_EQ(load.out.last_id, 100);
	check_log(s, "m", 100);
	rr_store_close(s);
	t_tmpdir_rm(dir);

	/* crash */
	t_tmpdir(dir, sizeof(dir), "mem");
	o.dir = dir;
	uint64_t acked = run_child(dir, RR_STORE_MEMORY, 2000, epoch, NULL, 0);

	s = t_open(&o);
	CHECK_EQ(t_room_load(s, "crash", &load), 0);
	CHECK(strcmp(load.out.epoch, epoch) != 0); /* a new epoch tells clients */
	CHECK(load.out.last_id <= acked);	   /* what survived, if anything */
	check_log(s, "crash", load.out.last_id);
	printf("memory crash: %llu acknowledged, %llu survived, epoch %s (was %s)\n",
	       (unsigned long long)acked, (unsigned long long)load.out.last_id, load.out.epoch,
	       epoch);
	rr_store_close(s);
	t_tmpdir_rm(dir);
}

/* memory mode: what reached SST files survives a crash, under a new epoch. */
static void test_memory_crash_after_flush(void)
{
	char dir[256], epoch[17];
	struct rr_store_req load;

	t_tmpdir(dir, sizeof(dir), "memflush");
	uint64_t acked = run_child(dir, RR_STORE_MEMORY, 2000, epoch, NULL, 500);
	struct rr_store_opts o = {.dir = dir, .durability = RR_STORE_MEMORY};
	struct rr_store *s = t_open(&o);

	CHECK_EQ(t_room_load(s, "crash", &load), 0);
	CHECK(!load.out.created);
	CHECK(strcmp(load.out.epoch, epoch) != 0);
	CHECK(load.out.last_id >= 500 && load.out.last_id <= acked);
	check_log(s, "crash", load.out.last_id);
	printf("memory crash after a flush at 500: %llu acknowledged, 1..%llu survived, new "
	       "epoch\n",
	       (unsigned long long)acked, (unsigned long long)load.out.last_id);
	/* numbering continues after what survived */
	char p[128];

	payload_for(p, sizeof(p), load.out.last_id + 1);
	CHECK_EQ(t_append(s, "crash", load.out.last_id + 1, p), 0);
	rr_store_close(s);
	/* a clean close does not rotate again */
	char epoch2[17];

	memcpy(epoch2, load.out.epoch, 17);
	s = t_open(&o);
	CHECK_EQ(t_room_load(s, "crash", &load), 0);
	CHECK(strcmp(load.out.epoch, epoch2) == 0);
	rr_store_close(s);
	t_tmpdir_rm(dir);
}

/* async mode: a crash in the same boot keeps the epoch (nothing acknowledged
 * is lost: see test_crash); a new boot id after an unclean stop means a power
 * loss may have dropped the page cache, so epochs rotate. Simulated with
 * boot-id files. */
static void test_async_power_loss(void)
{
	char dir[256], epoch[17], boot_a[300], boot_b[300];
	struct rr_store_req load;

	t_tmpdir(dir, sizeof(dir), "power");
	snprintf(boot_a, sizeof(boot_a), "%s.boot-a", dir);
	snprintf(boot_b, sizeof(boot_b), "%s.boot-b", dir);
	FILE *f = fopen(boot_a, "w");

	fputs("11111111-2222-3333-4444-555555555555\n", f);
	fclose(f);
	f = fopen(boot_b, "w");
	fputs("99999999-2222-3333-4444-555555555555\n", f);
	fclose(f);

	uint64_t acked = run_child(dir, RR_STORE_ASYNC, 1000, epoch, boot_a, 0);
	struct rr_store_opts o = {.dir = dir, .durability = RR_STORE_ASYNC, .boot_id_path = boot_b};
	struct rr_store *s = t_open(&o);

	CHECK_EQ(t_room_load(s, "crash", &load), 0);
	CHECK(strcmp(load.out.epoch, epoch) != 0);
	CHECK(load.out.last_id >= acked); /* no real power loss: all still there */
	check_log(s, "crash", load.out.last_id);
	rr_store_close(s);

	/* same boot, unclean stop: epoch kept */
	memcpy(epoch, load.out.epoch, 17);
	o.boot_id_path = boot_a;
	s = t_open(&o);
	rr_store_close(s);
	acked = run_child(dir, RR_STORE_ASYNC, 300, epoch, boot_a, 0);
	s = t_open(&o);
	CHECK_EQ(t_room_load(s, "crash", &load), 0);
	CHECK(strcmp(load.out.epoch, epoch) == 0);
	rr_store_close(s);
	unlink(boot_a);
	unlink(boot_b);
	t_tmpdir_rm(dir);
}

/* A real full disk: a 2 MiB tmpfs. */
static void test_disk_full(void)
{
	char mnt[] = "/tmp/rr-full-XXXXXX", dir[300];

	if (mkdtemp(mnt) == NULL) {
		perror("mkdtemp");
		CHECK(0);
		return;
	}
	if (mount("tmpfs", mnt, "tmpfs", 0, "size=2m") < 0) {
		snprintf(skip_cause, sizeof(skip_cause),
			 "disk-full: mount(\"tmpfs\", %s, \"tmpfs\", 0, \"size=2m\"): %s (euid %u)",
			 mnt, strerror(errno), (unsigned)geteuid());
		rmdir(mnt);
		return;
	}
	snprintf(dir, sizeof(dir), "%s/data", mnt);
	struct rr_store_opts o = {.dir = dir, .durability = RR_STORE_SYNC};
	struct rr_store *s = t_open(&o);
	struct rr_store_req load, rd;
	static char big[16384];
	uint64_t id = 1;
	int err = 0;

	memset(big, 'z', sizeof(big) - 1);
	CHECK_EQ(t_room_load(s, "full", &load), 0);
	/* fill: 2 MiB / 16 KiB ≈ 128 appends at most */
	for (int i = 0; i < 400; i++) {
		err = t_append(s, "full", id, big);
		if (err != 0)
			break;
		id++;
	}
	uint64_t stored = id - 1;

	printf("disk full after %llu appends of 16 KiB: %s\n", (unsigned long long)stored,
	       strerror(-err));
	CHECK(err == -ENOSPC || err == -EIO);
	CHECK(stored > 0);
	/* still full: later writes fail too (and reads may, while it reopens) */
	CHECK(t_append(s, "full", id, "small") < 0);

	/* the disk "recovers": grow the file system */
	CHECK_EQ(mount(NULL, mnt, NULL, MS_REMOUNT, "size=64m"), 0);
	int ok = -1;

	for (int i = 0; i < 100 && ok != 0; i++) {
		ok = t_append(s, "full", id, "after-recovery");
		if (ok == -ESTALE)
			break;
		if (ok != 0)
			usleep(50 * 1000); /* reopen back-off */
	}
	CHECK_EQ(ok, 0);
	CHECK_EQ(t_room_load(s, "full", &load), 0);
	CHECK_EQ(load.out.last_id, stored + 1);

	/* the failed appends left nothing behind */
	t_req_init(&rd, RR_STORE_READ_AFTER, "full");
	rd.limit = 1000;
	CHECK_EQ(t_run(s, &rd), 0);
	CHECK_EQ(rd.out.n_items, stored + 1);
	for (uint32_t i = 0; i < rd.out.n_items; i++) {
		CHECK_EQ(rd.out.items[i].id, i + 1);
		if (i < stored)
			CHECK_EQ(rd.out.items[i].val_len, sizeof(big) - 1);
	}
	rr_store_req_release(&rd);
	rr_store_close(s);

	/* and it all survives a reopen */
	s = t_open(&o);
	CHECK_EQ(t_room_load(s, "full", &load), 0);
	CHECK_EQ(load.out.last_id, stored + 1);
	rr_store_close(s);
	umount2(mnt, MNT_DETACH);
	rmdir(mnt);
}

int main(int argc, char **argv)
{
	signal(SIGPIPE, SIG_IGN);
	t_ring_init();
	if (argc == 7 && strcmp(argv[1], "child") == 0) {
		crash_child(argv[2], (enum rr_store_durability)atoi(argv[3]), atoi(argv[4]),
			    strcmp(argv[5], "-") == 0 ? NULL : argv[5],
			    strtoull(argv[6], NULL, 10));
		return 1;
	}
	test_crash(RR_STORE_ASYNC, 5000);
	test_crash(RR_STORE_SYNC, 300);
	test_memory_mode();
	test_memory_crash_after_flush();
	test_async_power_loss();
	test_disk_full();
	io_uring_queue_exit(&t_ring);
	int rc = check_done();

	if (rc == 0 && skip_cause[0] != '\0') {
		printf("SKIP %s\n", skip_cause);
		return 77;
	}
	return rc;
}
