/*
 * ringroom-bench: a load generator for any RFC 6455 server (ringroom's own
 * /echo and /raw/{room} in particular).
 *
 * This file is the parent: flags, the shared region, forking the workers,
 * the once-a-second live line, the phase changes, and the merged report.
 * The traffic itself is in worker.c; README.md says what is measured.
 */
#include "bench.h"
#include "frame.h"

#include "core/flags.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define NS_PER_S 1000000000ull
/* Each worker holds at most this many sockets: the fd limit of this class of
 * machine is 20,000 and the ring, buffers and stdio need a few. */
#define CONNS_PER_PROC_MAX 19900
/* A publisher further behind its schedule than this is reported. */
#define PUB_BACKLOG_WARN 100

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
	(void)sig;
	interrupted = 1;
}

static const char *mode_name(enum rr_bench_mode m)
{
	static const char *const names[] = {"echo", "fanout", "idle", "churn", "chat", "publish"};
	return names[m];
}

static void usage(FILE *f)
{
	fprintf(
	    f,
	    "usage: ringroom-bench MODE [options] [URL]\n"
	    "\n"
	    "MODE: echo | fanout | idle | churn | chat | publish\n"
	    "URL:  ws://host:port/path or wss://...; every {room} is replaced by r0, r1, ...\n"
	    "      (default ws://127.0.0.1:8080/echo for echo, idle and churn,\n"
	    "       ws://127.0.0.1:8080/raw/{room} for fanout,\n"
	    "       ws://127.0.0.1:8080/chat/{room} for chat: fanout's shape with\n"
	    "       ringroom chat messages, acks timed;\n"
	    "       ws://127.0.0.1:8080/raw/{room} for publish: members join it, the\n"
	    "       HTTP publishers POST to /api/raw/{room} on the same host and port)\n"
	    "\n"
	    "  --conns N              echo/idle: connections; churn: concurrent cycles (100)\n"
	    "  --rooms R              rooms (1); echo/idle/churn: connection g joins r<g mod R>\n"
	    "  --members M            fanout: members per room (100)\n"
	    "  --publishers P         fanout: publishers per room, among the members (1);\n"
	    "                         publish: keep-alive HTTP connections in all\n"
	    "  --rate MSGS            fanout: messages per second per room (100);\n"
	    "                         publish: requests per second in all\n"
	    "  --api-key KEY          publish: the backend API key (Authorization: Bearer)\n"
	    "  --window N             publish: requests awaiting their answers per\n"
	    "                         connection, pipelined (8)\n"
	    "  --size SIZE            message size, >= %d (64); under %d B the stamp is short\n"
	    "  --warmup DUR           not measured (1s)\n"
	    "  --duration DUR         measured (10s)\n"
	    "  --drain DUR            after the run, wait this long for messages in flight (2s)\n"
	    "  --procs K              worker processes, each its own ring and connections (1)\n"
	    "  --src-ips N            spread source addresses over 127.0.0.1..127.0.0.N\n"
	    "                         (default: one per 20000 connections, 8 for churn)\n"
	    "  --connect-concurrency N  upgrades in flight per worker (64)\n"
	    "  --connect-timeout DUR  per connection, connect + upgrade (10s)\n"
	    "  --ports P1,P2,...      connect to these ports of the URL's host instead of\n"
	    "                         its port: connection g to the (g mod N)-th, so a room's\n"
	    "                         members spread round-robin over N brokers (a cluster)\n"
	    "  --server-pid PID       idle: report the server's RSS per connection and CPU\n"
	    "  --slow-readers PCT     fanout: this %% of each room's members stop reading after\n"
	    "                         the warm-up; the server should close them with 1013\n"
	    "  --drop-every N         test hook: discard every Nth received message\n"
	    "  --insecure             wss://: do not check the server's certificate\n"
	    "  --ca FILE              wss://: the server's chain must verify against FILE\n"
	    "                         (PEM; the host name is not checked)\n"
	    "  --json                 print the result as JSON on stdout instead of a table\n"
	    "  --quiet                no live line on stderr\n"
	    "  --help\n"
	    "\n"
	    "DUR: whole number + ms|s|m|h (bare = seconds); SIZE: bytes or KiB/MiB.\n"
	    "Exit status: 0 clean run,\n"
	    "1 loss/duplicates/reordering/errors detected, 2 bad usage.\n",
	    RR_BENCH_STAMP_SHORT_LEN, RR_BENCH_STAMP_LEN);
}

/* DUR as the broker reads it (core/flags.c), in nanoseconds. */
static int parse_dur(const char *s, uint64_t *out)
{
	uint64_t ms;
	if (rr_parse_duration_ms(s, &ms) < 0 || ms > UINT64_MAX / 1000000)
		return -EINVAL;
	*out = ms * 1000000;
	return 0;
}

/* A count in [min, max]. */
static int parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || end == s || *s == '-' || *end != '\0' || v < min || v > max)
		return -EINVAL;
	*out = v;
	return 0;
}

/* --ports: 1 to RR_BENCH_PORTS_MAX ports, comma-separated. */
static int parse_ports(const char *s, struct rr_bench_cfg *cfg)
{
	char buf[RR_BENCH_PORTS_MAX * 6 + 1];
	if (strlen(s) >= sizeof(buf))
		return -EINVAL;
	strcpy(buf, s);
	cfg->nports = 0;
	char *save = NULL;
	for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		uint64_t v;
		if (cfg->nports == RR_BENCH_PORTS_MAX || parse_u64(t, 1, 65535, &v))
			return -EINVAL;
		cfg->ports[cfg->nports++] = (uint16_t)v;
	}
	return cfg->nports ? 0 : -EINVAL;
}

static void die_flag(const char *flag, const char *val)
{
	fprintf(stderr, "ringroom-bench: bad value for --%s: '%s'\n", flag, val);
	exit(2);
}

enum {
	O_CONNS = 256,
	O_ROOMS,
	O_MEMBERS,
	O_PUBLISHERS,
	O_RATE,
	O_SIZE,
	O_WARMUP,
	O_DURATION,
	O_DRAIN,
	O_PROCS,
	O_SRC_IPS,
	O_CONC,
	O_CTIMEOUT,
	O_SERVER_PID,
	O_DROP,
	O_SLOW,
	O_INSECURE,
	O_CA,
	O_JSON,
	O_QUIET,
	O_HELP,
	O_API_KEY,
	O_WINDOW,
	O_PORTS,
};

static void parse_args(int argc, char **argv, struct rr_bench_cfg *cfg)
{
	static const struct option opts[] = {
	    {"conns", required_argument, 0, O_CONNS},
	    {"rooms", required_argument, 0, O_ROOMS},
	    {"members", required_argument, 0, O_MEMBERS},
	    {"publishers", required_argument, 0, O_PUBLISHERS},
	    {"rate", required_argument, 0, O_RATE},
	    {"size", required_argument, 0, O_SIZE},
	    {"warmup", required_argument, 0, O_WARMUP},
	    {"duration", required_argument, 0, O_DURATION},
	    {"drain", required_argument, 0, O_DRAIN},
	    {"procs", required_argument, 0, O_PROCS},
	    {"src-ips", required_argument, 0, O_SRC_IPS},
	    {"connect-concurrency", required_argument, 0, O_CONC},
	    {"connect-timeout", required_argument, 0, O_CTIMEOUT},
	    {"server-pid", required_argument, 0, O_SERVER_PID},
	    {"drop-every", required_argument, 0, O_DROP},
	    {"slow-readers", required_argument, 0, O_SLOW},
	    {"insecure", no_argument, 0, O_INSECURE},
	    {"ca", required_argument, 0, O_CA},
	    {"json", no_argument, 0, O_JSON},
	    {"quiet", no_argument, 0, O_QUIET},
	    {"help", no_argument, 0, O_HELP},
	    {"api-key", required_argument, 0, O_API_KEY},
	    {"window", required_argument, 0, O_WINDOW},
	    {"ports", required_argument, 0, O_PORTS},
	    {0, 0, 0, 0},
	};
	memset(cfg, 0, sizeof(*cfg));
	cfg->conns = 100;
	cfg->rooms = 1;
	cfg->members = 100;
	cfg->publishers = 1;
	cfg->rate = 100;
	cfg->size = 64;
	cfg->warmup_ns = 1 * NS_PER_S;
	cfg->duration_ns = 10 * NS_PER_S;
	cfg->drain_ns = 2 * NS_PER_S;
	cfg->connect_timeout_ns = 10 * NS_PER_S;
	cfg->procs = 1;
	cfg->connect_concurrency = 64;
	cfg->window = 8;
	bool src_ips_set = false;
	uint64_t v;
	int o;
	while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (o) {
		case O_CONNS:
			if (parse_u64(optarg, 1, 10000000, &v))
				die_flag("conns", optarg);
			cfg->conns = (uint32_t)v;
			break;
		case O_ROOMS:
			if (parse_u64(optarg, 1, 1000000, &v))
				die_flag("rooms", optarg);
			cfg->rooms = (uint32_t)v;
			break;
		case O_MEMBERS:
			if (parse_u64(optarg, 2, 10000000, &v))
				die_flag("members", optarg);
			cfg->members = (uint32_t)v;
			break;
		case O_PUBLISHERS:
			if (parse_u64(optarg, 1, 100000, &v))
				die_flag("publishers", optarg);
			cfg->publishers = (uint32_t)v;
			break;
		case O_RATE: {
			char *end;
			double r = strtod(optarg, &end);
			if (end == optarg || *end || !(r > 0) || r > 1e8)
				die_flag("rate", optarg);
			cfg->rate = r;
			break;
		}
		case O_SIZE:
			if (rr_parse_size(optarg, &v) < 0 || v < RR_BENCH_STAMP_SHORT_LEN ||
			    v > 16 * 1024 * 1024)
				die_flag("size", optarg);
			cfg->size = (uint32_t)v;
			break;
		case O_WARMUP:
			if (parse_dur(optarg, &cfg->warmup_ns))
				die_flag("warmup", optarg);
			break;
		case O_DURATION:
			if (parse_dur(optarg, &cfg->duration_ns) || cfg->duration_ns < 1000000)
				die_flag("duration", optarg);
			break;
		case O_DRAIN:
			if (parse_dur(optarg, &cfg->drain_ns))
				die_flag("drain", optarg);
			break;
		case O_PROCS:
			if (parse_u64(optarg, 1, 64, &v))
				die_flag("procs", optarg);
			cfg->procs = (uint32_t)v;
			break;
		case O_SRC_IPS:
			if (parse_u64(optarg, 1, 254, &v))
				die_flag("src-ips", optarg);
			cfg->src_ips = (uint32_t)v;
			src_ips_set = true;
			break;
		case O_CONC:
			if (parse_u64(optarg, 1, 100000, &v))
				die_flag("connect-concurrency", optarg);
			cfg->connect_concurrency = (uint32_t)v;
			break;
		case O_CTIMEOUT:
			if (parse_dur(optarg, &cfg->connect_timeout_ns) || !cfg->connect_timeout_ns)
				die_flag("connect-timeout", optarg);
			break;
		case O_SERVER_PID:
			if (parse_u64(optarg, 1, 1u << 30, &v))
				die_flag("server-pid", optarg);
			cfg->server_pid = (int)v;
			break;
		case O_DROP:
			if (parse_u64(optarg, 1, UINT64_MAX, &v))
				die_flag("drop-every", optarg);
			cfg->drop_every = v;
			break;
		case O_SLOW: {
			char *end;
			double r = strtod(optarg, &end);
			if (end == optarg || *end || !(r > 0) || r > 50)
				die_flag("slow-readers", optarg);
			cfg->slow_pct = r;
			break;
		}
		case O_INSECURE:
			cfg->insecure = true;
			break;
		case O_CA:
			if (access(optarg, R_OK) != 0)
				die_flag("ca", optarg);
			cfg->ca_file = optarg;
			break;
		case O_JSON:
			cfg->json = true;
			break;
		case O_API_KEY: {
			/* a header value: printable, no spaces (protocol.md's keys) */
			bool ok = optarg[0] != '\0' && strlen(optarg) <= 512;
			for (const char *k = optarg; ok && *k; k++)
				ok = *k > ' ' && *k < 0x7f;
			if (!ok)
				die_flag("api-key", "(not shown)");
			cfg->api_key = optarg;
			break;
		}
		case O_WINDOW:
			if (parse_u64(optarg, 1, 1024, &v))
				die_flag("window", optarg);
			cfg->window = (uint32_t)v;
			break;
		case O_PORTS:
			if (parse_ports(optarg, cfg))
				die_flag("ports", optarg);
			break;
		case O_QUIET:
			cfg->quiet = true;
			break;
		case O_HELP:
		case 'h':
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			exit(2);
		}
	}
	if (optind >= argc) {
		usage(stderr);
		exit(2);
	}
	const char *m = argv[optind++];
	if (strcmp(m, "echo") == 0)
		cfg->mode = RR_BENCH_ECHO;
	else if (strcmp(m, "fanout") == 0)
		cfg->mode = RR_BENCH_FANOUT;
	else if (strcmp(m, "idle") == 0)
		cfg->mode = RR_BENCH_IDLE;
	else if (strcmp(m, "churn") == 0)
		cfg->mode = RR_BENCH_CHURN;
	else if (strcmp(m, "chat") == 0)
		cfg->mode = RR_BENCH_CHAT;
	else if (strcmp(m, "publish") == 0)
		cfg->mode = RR_BENCH_PUBLISH;
	else {
		fprintf(stderr, "ringroom-bench: unknown mode '%s'\n", m);
		exit(2);
	}
	const char *url = cfg->mode == RR_BENCH_FANOUT || cfg->mode == RR_BENCH_PUBLISH
			      ? "ws://127.0.0.1:8080/raw/{room}"
			  : cfg->mode == RR_BENCH_CHAT ? "ws://127.0.0.1:8080/chat/{room}"
						       : "ws://127.0.0.1:8080/echo";
	if (optind < argc)
		url = argv[optind++];
	if (optind < argc) {
		fprintf(stderr, "ringroom-bench: unexpected argument '%s'\n", argv[optind]);
		exit(2);
	}
	int err = rr_bench_url_parse(url, &cfg->url);
	if (err) {
		fprintf(stderr, "ringroom-bench: bad URL '%s': %s\n", url,
			err == -EPROTONOSUPPORT ? "only ws:// and wss:// are supported"
			: err == -EHOSTUNREACH	? "host must be an IPv4 address or localhost"
						: strerror(-err));
		exit(2);
	}
	if (cfg->url.tls && !cfg->insecure && !cfg->ca_file) {
		fprintf(stderr, "ringroom-bench: wss:// needs --ca FILE or --insecure\n");
		exit(2);
	}
	if (cfg->slow_pct > 0 && cfg->mode != RR_BENCH_FANOUT) {
		fprintf(stderr, "ringroom-bench: --slow-readers is for fanout\n");
		exit(2);
	}
	if (cfg->mode == RR_BENCH_PUBLISH) {
		if (!cfg->api_key) {
			fprintf(stderr, "ringroom-bench: publish needs --api-key KEY\n");
			exit(2);
		}
		/* members get the API's frames as is: binary, stamped */
		if (strncmp(cfg->url.path, "/raw/", 5) != 0) {
			fprintf(stderr, "ringroom-bench: publish drives /raw/ rooms: the URL's "
					"path must start with /raw/\n");
			exit(2);
		}
		if ((uint64_t)cfg->rooms * cfg->publishers > 10000000) {
			fprintf(stderr, "ringroom-bench: --rooms x --publishers too large\n");
			exit(2);
		}
	} else if (cfg->api_key) {
		fprintf(stderr, "ringroom-bench: --api-key is for publish\n");
		exit(2);
	}
	if (rr_bench_mode_rooms(cfg->mode)) {
		if (cfg->publishers > cfg->members && cfg->mode != RR_BENCH_PUBLISH) {
			fprintf(stderr, "ringroom-bench: --publishers must not exceed --members\n");
			exit(2);
		}
		if (cfg->rooms > 1 && !cfg->url.has_room) {
			fprintf(stderr, "ringroom-bench: --rooms > 1 needs {room} in the URL\n");
			exit(2);
		}
		if ((uint64_t)cfg->rooms * cfg->members > 10000000) {
			fprintf(stderr, "ringroom-bench: --rooms x --members too large\n");
			exit(2);
		}
	}
	uint32_t total = rr_bench_cfg_total_conns(cfg);
	if (cfg->mode != RR_BENCH_CHURN && total > cfg->procs * CONNS_PER_PROC_MAX) {
		fprintf(stderr,
			"ringroom-bench: %u connections need --procs %u or more (%u per process)\n",
			total, (total + CONNS_PER_PROC_MAX - 1) / CONNS_PER_PROC_MAX,
			CONNS_PER_PROC_MAX);
		exit(2);
	}
	if (cfg->procs > total) {
		fprintf(stderr, "ringroom-bench: --procs exceeds the number of connections\n");
		exit(2);
	}
	if (!src_ips_set) {
		/* one source address has ~28k ephemeral ports per destination */
		cfg->src_ips = (total + 19999) / 20000;
		if (cfg->mode == RR_BENCH_CHURN)
			cfg->src_ips = 8;
	}
}

/* ---- merging and reporting ------------------------------------------- */

struct totals {
	struct rr_bench_slot s; /* summed counters, merged histograms */
	uint64_t rss_start_kb, rss_open_kb;
	double bench_cpu_percent; /* the workers' CPU over the window, % of one core */
};

static void merge(const struct rr_bench_shared *sh, struct totals *t, bool with_hist)
{
	memset(t, 0, sizeof(*t));
	rr_bench_hist_init(&t->s.lat);
	rr_bench_hist_init(&t->s.hs);
	rr_bench_hist_init(&t->s.ack);
	for (uint32_t i = 0; i < sh->nslots; i++) {
		const struct rr_bench_slot *s = &sh->slots[i];
#define ADD(f) t->s.f += __atomic_load_n(&s->f, __ATOMIC_RELAXED)
		ADD(connected);
		ADD(opened);
		ADD(conn_failed);
		ADD(hs_timeouts);
		ADD(peer_closed);
		ADD(proto_errors);
		ADD(sent);
		ADD(received);
		ADD(measured);
		ADD(arrived);
		ADD(cycles);
		ADD(misrouted);
		ADD(dropped);
		ADD(enobufs);
		ADD(slow_1013);
		ADD(slow_other);
		ADD(acks);
		ADD(unacked);
		ADD(chat_ready);
		ADD(chat_errors);
		ADD(pub_answered);
		ADD(http_errors);
		ADD(api_delivered);
		ADD(seq.lost);
		ADD(seq.dup);
		ADD(seq.reordered);
		ADD(seq.late);
		ADD(seq.tail);
		ADD(seq.received);
#undef ADD
		uint64_t b = __atomic_load_n(&s->pub_backlog_max, __ATOMIC_RELAXED);
		if (b > t->s.pub_backlog_max)
			t->s.pub_backlog_max = b;
		if (s->last_status)
			t->s.last_status = s->last_status;
		if (s->last_errno)
			t->s.last_errno = s->last_errno;
		if (s->last_close_code)
			t->s.last_close_code = s->last_close_code;
		if (s->http_last_status)
			t->s.http_last_status = s->http_last_status;
		t->rss_start_kb += s->rss_start_kb;
		t->rss_open_kb += s->rss_open_kb;
		if (with_hist) {
			rr_bench_hist_merge(&t->s.lat, &s->lat);
			rr_bench_hist_merge(&t->s.hs, &s->hs);
			rr_bench_hist_merge(&t->s.ack, &s->ack);
		}
	}
}

static void fmt_ns(char *out, size_t cap, uint64_t ns)
{
	if (ns < 1000)
		snprintf(out, cap, "%" PRIu64 " ns", ns);
	else if (ns < 1000000)
		snprintf(out, cap, "%.1f us", (double)ns / 1e3);
	else if (ns < 10000000000ull)
		snprintf(out, cap, "%.3f ms", (double)ns / 1e6);
	else
		snprintf(out, cap, "%.2f s", (double)ns / 1e9);
}

static int read_cpu_ticks(int pid, uint64_t *ticks)
{
	char path[64], buf[2048];
	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return -errno;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	/* fields after the parenthesised command: state is field 3, utime 14,
	 * stime 15 */
	char *p = strrchr(buf, ')');
	if (!p)
		return -EINVAL;
	unsigned long long ut, st;
	if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
		return -EINVAL;
	*ticks = ut + st;
	return 0;
}

/*
 * Machine-wide context for a run: the load average, TCP retransmissions
 * (/proc/net/snmp) and packets dropped by the per-CPU backlog that loopback
 * traffic goes through (/proc/net/softnet_stat, second column). On a shared
 * machine these explain latency outliers that are nobody's code.
 */
struct machine {
	double load1;
	uint64_t retrans0, retrans1;
	uint64_t drops0, drops1;
	bool ok;
};

static uint64_t tcp_retrans(void)
{
	char line[1024], names[1024] = "";
	FILE *f = fopen("/proc/net/snmp", "r");
	if (!f)
		return 0;
	uint64_t v = 0;
	while (fgets(line, sizeof(line), f)) {
		if (strncmp(line, "Tcp:", 4) != 0)
			continue;
		if (!names[0]) {
			snprintf(names, sizeof(names), "%s", line);
			continue;
		}
		/* the value line: find RetransSegs' column in the name line */
		char *ns, *vs, *n = strtok_r(names, " \n", &ns), *val = strtok_r(line, " \n", &vs);
		for (int i = 0; n && val && i < 64; i++) {
			if (strcmp(n, "RetransSegs") == 0) {
				v = strtoull(val, NULL, 10);
				break;
			}
			n = strtok_r(NULL, " \n", &ns);
			val = strtok_r(NULL, " \n", &vs);
		}
		break;
	}
	fclose(f);
	return v;
}

static uint64_t softnet_drops(void)
{
	char line[512];
	FILE *f = fopen("/proc/net/softnet_stat", "r");
	if (!f)
		return 0;
	uint64_t v = 0;
	for (int cpu = 0; cpu < 4096 && fgets(line, sizeof(line), f); cpu++) {
		char *end;
		strtoul(line, &end, 16);
		v += strtoul(end, NULL, 16);
	}
	fclose(f);
	return v;
}

static void machine_start(struct machine *m)
{
	double l[1];
	m->load1 = getloadavg(l, 1) == 1 ? l[0] : -1;
	m->retrans0 = tcp_retrans();
	m->drops0 = softnet_drops();
}

static void machine_end(struct machine *m)
{
	m->retrans1 = tcp_retrans();
	m->drops1 = softnet_drops();
	m->ok = true;
}

/* utime + stime of the worker processes, summed. */
static int workers_ticks(const pid_t *pids, uint32_t n, uint64_t *out)
{
	uint64_t sum = 0;
	for (uint32_t i = 0; i < n; i++) {
		uint64_t v;
		if (pids[i] <= 0 || read_cpu_ticks(pids[i], &v) < 0)
			return -1;
		sum += v;
	}
	*out = sum;
	return 0;
}

struct idle_probe {
	bool ok;
	uint64_t rss_before_kb, rss_after_kb;
	uint64_t cpu_ticks;
	double cpu_seconds_window;
};

static const char *phase_label(int phase, uint64_t now, const struct rr_bench_shared *sh)
{
	if (phase == RR_BENCH_PH_CONNECT)
		return "connect";
	if (phase == RR_BENCH_PH_RUN)
		return now < sh->t_warm ? "warmup" : now < sh->t_end ? "run" : "stop";
	return "drain";
}

static void live_line(const struct rr_bench_cfg *cfg, const struct rr_bench_shared *sh,
		      struct totals *t, uint64_t *prev_rx, uint64_t *prev_cycles, uint64_t t0)
{
	uint64_t now = rr_bench_now_ns();
	int phase = RR_LOAD(sh->phase);
	merge(sh, t, true);
	char p99[32];
	fmt_ns(p99, sizeof(p99), rr_bench_hist_percentile(&t->s.lat, 99.0));
	uint64_t rx = t->s.received, cy = t->s.opened;
	fprintf(stderr, "[%6.1fs %-7s] conns %" PRIu64 "/%u", (double)(now - t0) / 1e9,
		phase_label(phase, now, sh), t->s.connected, rr_bench_cfg_total_conns(cfg));
	if (phase == RR_BENCH_PH_CONNECT)
		; /* only the connection count means something yet */
	else if (cfg->mode == RR_BENCH_CHURN)
		fprintf(stderr, "  upgrades/s %" PRIu64, cy - *prev_cycles);
	else if (cfg->mode != RR_BENCH_IDLE)
		fprintf(stderr, "  deliveries/s %" PRIu64 "  p99 %s", rx - *prev_rx, p99);
	if (cfg->mode == RR_BENCH_PUBLISH && phase != RR_BENCH_PH_CONNECT) {
		/* the parent is one process: its static keeps the last second's */
		static uint64_t prev_acks;
		fprintf(stderr, "  publishes/s %" PRIu64, t->s.acks - prev_acks);
		prev_acks = t->s.acks;
		if (t->s.http_errors)
			fprintf(stderr, "  HTTP ERRORS %" PRIu64, t->s.http_errors);
	}
	if (t->s.conn_failed)
		fprintf(stderr, "  failed %" PRIu64, t->s.conn_failed);
	if (t->s.seq.lost || t->s.seq.dup || t->s.seq.reordered || t->s.seq.late)
		fprintf(stderr, "  LOSS %" PRIu64 " DUP %" PRIu64 " REORDER %" PRIu64,
			t->s.seq.lost, t->s.seq.dup, t->s.seq.reordered + t->s.seq.late);
	fputc('\n', stderr);
	*prev_rx = rx;
	*prev_cycles = cy;
}

static void print_report(const struct rr_bench_cfg *cfg, const struct totals *t,
			 const struct idle_probe *ip, const struct machine *m, bool failed,
			 bool partial)
{
	const struct rr_bench_slot *s = &t->s;
	double dur = (double)cfg->duration_ns / 1e9;
	uint32_t total = rr_bench_cfg_total_conns(cfg);
	static const double pcts[] = {50, 90, 99, 99.9};
	static const char *const pnames[] = {"p50", "p90", "p99", "p99_9"};
	uint32_t nslow = rr_bench_cfg_slow_per_room(cfg) * cfg->rooms;
	/* messages the publishers were asked to send over warm-up and window */
	double sched = (cfg->mode == RR_BENCH_PUBLISH ? 1.0 : (double)cfg->rooms) * cfg->rate *
		       ((double)(cfg->warmup_ns + cfg->duration_ns) / 1e9);
	double rate =
	    cfg->mode == RR_BENCH_CHURN ? (double)s->cycles / dur : (double)s->measured / dur;
	if (cfg->json) {
		printf("{\"mode\":\"%s\",\"url\":\"%s://%s:%u%s\",\"tls\":%s,\"procs\":%u,",
		       mode_name(cfg->mode), cfg->url.tls ? "wss" : "ws", cfg->url.host,
		       cfg->url.port, cfg->url.path, cfg->url.tls ? "true" : "false", cfg->procs);
		if (cfg->nports) {
			printf("\"ports\":[");
			for (uint32_t i = 0; i < cfg->nports; i++)
				printf("%s%u", i ? "," : "", cfg->ports[i]);
			printf("],");
		}
		printf("\"connections\":%u,\"opened\":%" PRIu64 ",\"failed\":%" PRIu64 ",", total,
		       s->opened, s->conn_failed);
		if (rr_bench_mode_rooms(cfg->mode))
			printf("\"rooms\":%u,\"members\":%u,\"publishers\":%u,\"rate\":%g,",
			       cfg->rooms, cfg->members, cfg->publishers, cfg->rate);
		printf("\"size\":%u,\"warmup_s\":%g,\"duration_s\":%g,", cfg->size,
		       (double)cfg->warmup_ns / 1e9, dur);
		printf("\"sent\":%" PRIu64 ",\"received\":%" PRIu64 ",\"measured\":%" PRIu64 ",",
		       s->sent, s->received, s->measured);
		if (cfg->mode == RR_BENCH_CHURN)
			printf("\"cycles\":%" PRIu64 ",\"cycles_per_s\":%.1f,", s->cycles, rate);
		else
			printf("\"per_s\":%.1f,\"arrived_per_s\":%.1f,", rate,
			       (double)s->arrived / dur);
		printf("\"latency_ns\":{");
		for (int i = 0; i < 4; i++)
			printf("\"%s\":%" PRIu64 ",", pnames[i],
			       rr_bench_hist_percentile(&s->lat, pcts[i]));
		printf("\"max\":%" PRIu64 ",\"count\":%" PRIu64 "},", s->lat.max, s->lat.count);
		printf("\"upgrade_ns\":{\"p50\":%" PRIu64 ",\"p99\":%" PRIu64 ",\"max\":%" PRIu64
		       ",\"count\":%" PRIu64 "},",
		       rr_bench_hist_percentile(&s->hs, 50), rr_bench_hist_percentile(&s->hs, 99),
		       s->hs.max, s->hs.count);
		printf("\"lost\":%" PRIu64 ",\"dup\":%" PRIu64 ",\"reordered\":%" PRIu64
		       ",\"late\":%" PRIu64 ",\"misrouted\":%" PRIu64
		       ",\"dropped_on_purpose\":%" PRIu64 ",\"peer_closed\":%" PRIu64
		       ",\"errors\":%" PRIu64 ",",
		       s->seq.lost, s->seq.dup, s->seq.reordered, s->seq.late, s->misrouted,
		       s->dropped, s->peer_closed, s->proto_errors);
		printf("\"undelivered_at_end\":%" PRIu64 ",\"publisher_backlog_max\":%" PRIu64
		       ",\"foreign\":%" PRIu64 ",",
		       s->seq.tail, s->pub_backlog_max, s->foreign);
		if (rr_bench_mode_rooms(cfg->mode))
			printf("\"schedule_percent\":%.1f,", 100.0 * (double)s->sent / sched);
		if (cfg->mode == RR_BENCH_PUBLISH) {
			printf("\"window\":%u,\"publishes_per_s\":%.1f,\"answered_200\":%" PRIu64
			       ",\"unanswered\":%" PRIu64 ",\"http_errors\":%" PRIu64
			       ",\"http_last_status\":%d,\"api_delivered\":%" PRIu64
			       ",\"answer_ns\":{",
			       cfg->window, (double)s->pub_answered / dur, s->acks, s->unacked,
			       s->http_errors, s->http_last_status, s->api_delivered);
			for (int i = 0; i < 4; i++)
				printf("\"%s\":%" PRIu64 ",", pnames[i],
				       rr_bench_hist_percentile(&s->ack, pcts[i]));
			printf("\"max\":%" PRIu64 ",\"count\":%" PRIu64 "},", s->ack.max,
			       s->ack.count);
		}
		if (cfg->mode == RR_BENCH_CHAT) {
			printf("\"acks\":%" PRIu64 ",\"unacked\":%" PRIu64
			       ",\"chat_errors\":%" PRIu64 ",\"ack_ns\":{",
			       s->acks, s->unacked, s->chat_errors);
			for (int i = 0; i < 4; i++)
				printf("\"%s\":%" PRIu64 ",", pnames[i],
				       rr_bench_hist_percentile(&s->ack, pcts[i]));
			printf("\"max\":%" PRIu64 ",\"count\":%" PRIu64 "},", s->ack.max,
			       s->ack.count);
		}
		if (nslow)
			printf("\"slow_readers\":%u,\"slow_closed_1013\":%" PRIu64
			       ",\"slow_closed_other\":%" PRIu64 ",\"slow_not_closed\":%" PRIu64
			       ",",
			       nslow, s->slow_1013, s->slow_other,
			       nslow - s->slow_1013 - s->slow_other);
		if (s->opened)
			printf("\"bench_rss_per_conn_bytes\":%.0f,",
			       ((double)t->rss_open_kb - (double)t->rss_start_kb) * 1024.0 /
				   (double)s->opened);
		if (ip && ip->ok)
			printf(
			    "\"server_rss_before_kb\":%" PRIu64 ",\"server_rss_after_kb\":%" PRIu64
			    ",\"server_rss_per_conn_bytes\":%.0f,\"server_cpu_percent\":%.3f,",
			    ip->rss_before_kb, ip->rss_after_kb,
			    s->connected ? ((double)ip->rss_after_kb - (double)ip->rss_before_kb) *
					       1024.0 / (double)s->connected
					 : 0.0,
			    ip->cpu_seconds_window > 0
				? 100.0 * (double)ip->cpu_ticks / (double)sysconf(_SC_CLK_TCK) /
				      ip->cpu_seconds_window
				: 0.0);
		if (t->bench_cpu_percent >= 0)
			printf("\"bench_cpu_percent\":%.1f,", t->bench_cpu_percent);
		if (m->ok)
			printf("\"load1\":%.2f,\"tcp_retransmits\":%" PRIu64
			       ",\"backlog_drops\":%" PRIu64 ",",
			       m->load1, m->retrans1 - m->retrans0, m->drops1 - m->drops0);
		printf("\"partial\":%s,\"ok\":%s}\n", partial ? "true" : "false",
		       failed ? "false" : "true");
		return;
	}
	printf("ringroom-bench %s  %s://%s:%u%s  procs %u", mode_name(cfg->mode),
	       cfg->url.tls ? "wss" : "ws", cfg->url.host, cfg->url.port, cfg->url.path,
	       cfg->procs);
	for (uint32_t i = 0; i < cfg->nports; i++)
		printf("%s%u", i ? "," : "  ports ", cfg->ports[i]);
	printf("\n");
	printf("  connections   %u asked, %" PRIu64 " opened, %" PRIu64 " failed", total, s->opened,
	       s->conn_failed);
	if (s->last_status)
		printf(" (last HTTP status %d)", s->last_status);
	if (s->last_errno)
		printf(" (last error: %s)", strerror(s->last_errno));
	if (s->hs_timeouts)
		printf(" (%" PRIu64 " got no upgrade response in time)", s->hs_timeouts);
	printf("\n");
	if (cfg->mode == RR_BENCH_PUBLISH)
		printf("  rooms         %u x %u members; %u HTTP publisher(s) POSTing %g msg/s in "
		       "all to /api%s, window %u, %u B\n",
		       cfg->rooms, cfg->members, cfg->publishers, cfg->rate, cfg->url.path,
		       cfg->window, cfg->size);
	else if (rr_bench_mode_rooms(cfg->mode))
		printf(
		    "  rooms         %u x %u members, %u publisher(s)/room, %g msg/s/room, %u B\n",
		    cfg->rooms, cfg->members, cfg->publishers, cfg->rate, cfg->size);
	else if (cfg->mode == RR_BENCH_ECHO)
		printf("  messages      %u B, one in flight per connection\n", cfg->size);
	printf("  window        %.2f s measured after %.2f s warm-up\n", dur,
	       (double)cfg->warmup_ns / 1e9);
	if (cfg->mode == RR_BENCH_ECHO || rr_bench_mode_rooms(cfg->mode)) {
		printf("  sent          %" PRIu64 " %s (all phases)", s->sent,
		       cfg->mode == RR_BENCH_PUBLISH ? "requests" : "messages");
		if (rr_bench_mode_rooms(cfg->mode))
			printf(", %.1f%% of the schedule", 100.0 * (double)s->sent / sched);
		printf("\n");
		if (cfg->mode == RR_BENCH_PUBLISH) {
			printf("  publishes     %" PRIu64
			       " stamped in window answered 200, %.0f/s  (%" PRIu64
			       " answered 200 in all, %" PRIu64 " delivered by their count)\n",
			       s->pub_answered, (double)s->pub_answered / dur, s->acks,
			       s->api_delivered);
			char a[5][32];
			for (int i = 0; i < 4; i++)
				fmt_ns(a[i], sizeof(a[i]),
				       rr_bench_hist_percentile(&s->ack, pcts[i]));
			fmt_ns(a[4], sizeof(a[4]), s->ack.max);
			printf("  answer        p50 %s  p90 %s  p99 %s  p99.9 %s  max %s  (request "
			       "sent to 200 read)\n",
			       a[0], a[1], a[2], a[3], a[4]);
			if (s->http_errors || s->unacked)
				printf("  HTTP ERRORS   %" PRIu64
				       " answers other than 200 (last %d), "
				       "%" PRIu64 " requests never answered\n",
				       s->http_errors, s->http_last_status, s->unacked);
		}
		printf("  %-13s %" PRIu64 " stamped in window, %.0f/s  (%" PRIu64
		       " received in all)\n",
		       cfg->mode == RR_BENCH_ECHO ? "echoes" : "deliveries", s->measured, rate,
		       s->received);
		/* under overload the stamped-in-window figure lags behind; this
		 * one is what the server delivered while the window was open */
		printf("  arrivals      %.0f/s while the window was open (any stamp)\n",
		       (double)s->arrived / dur);
		char v[5][32];
		for (int i = 0; i < 4; i++)
			fmt_ns(v[i], sizeof(v[i]), rr_bench_hist_percentile(&s->lat, pcts[i]));
		fmt_ns(v[4], sizeof(v[4]), s->lat.max);
		printf("  %-13s p50 %s  p90 %s  p99 %s  p99.9 %s  max %s%s\n",
		       cfg->mode == RR_BENCH_ECHO ? "round trip" : "latency", v[0], v[1], v[2],
		       v[3], v[4],
		       cfg->mode == RR_BENCH_PUBLISH ? "  (request sent to member)" : "");
		if (cfg->mode == RR_BENCH_CHAT) {
			char a[5][32];
			for (int i = 0; i < 4; i++)
				fmt_ns(a[i], sizeof(a[i]),
				       rr_bench_hist_percentile(&s->ack, pcts[i]));
			fmt_ns(a[4], sizeof(a[4]), s->ack.max);
			printf("  ack           p50 %s  p90 %s  p99 %s  p99.9 %s  max %s  (send to "
			       "ack, %" PRIu64 " acks, %" PRIu64 " never came)\n",
			       a[0], a[1], a[2], a[3], a[4], s->acks, s->unacked);
			if (s->chat_errors)
				printf("  CHAT ERRORS   %" PRIu64 " error frames from the server\n",
				       s->chat_errors);
		}
		if (rr_bench_mode_rooms(cfg->mode) && s->opened && !partial &&
		    (s->pub_backlog_max > PUB_BACKLOG_WARN ||
		     /* each publisher may be one message short of the schedule by rounding */
		     (double)s->sent < 0.99 * sched - (double)(cfg->mode == RR_BENCH_PUBLISH
								   ? cfg->publishers
								   : rr_bench_cfg_total_pubs(cfg))))
			printf("  WARNING: a publisher fell %" PRIu64
			       " messages behind its schedule (the bench or server is saturated)\n",
			       s->pub_backlog_max);
	}
	if (cfg->mode == RR_BENCH_CHURN)
		printf("  cycles        %" PRIu64 " in window, %.0f/s (connect, upgrade, close)\n",
		       s->cycles, rate);
	{
		char a[32], b[32], c[32];
		fmt_ns(a, sizeof(a), rr_bench_hist_percentile(&s->hs, 50));
		fmt_ns(b, sizeof(b), rr_bench_hist_percentile(&s->hs, 99));
		fmt_ns(c, sizeof(c), s->hs.max);
		printf("  upgrade       p50 %s  p99 %s  max %s  (connect start to 101)\n", a, b, c);
	}
	/* the upgrade buffers in flight (~256 KiB a worker) swamp the figure
	 * below ten thousand connections */
	if (s->opened >= 10000 && t->rss_open_kb > t->rss_start_kb)
		printf("  bench memory  %.0f B per connection (RSS growth while connecting)\n",
		       ((double)t->rss_open_kb - (double)t->rss_start_kb) * 1024.0 /
			   (double)s->opened);
	if (ip && ip->ok) {
		printf("  server RSS    %" PRIu64 " KiB -> %" PRIu64
		       " KiB: %.0f B per connection\n",
		       ip->rss_before_kb, ip->rss_after_kb,
		       s->connected ? ((double)ip->rss_after_kb - (double)ip->rss_before_kb) *
					  1024.0 / (double)s->connected
				    : 0.0);
		printf("  server CPU    %.3f%% of one core while idle (%.1f s)\n",
		       ip->cpu_seconds_window > 0
			   ? 100.0 * (double)ip->cpu_ticks / (double)sysconf(_SC_CLK_TCK) /
				 ip->cpu_seconds_window
			   : 0.0,
		       ip->cpu_seconds_window);
	}
	if (nslow)
		printf("  slow readers  %u stopped reading after the warm-up: %" PRIu64
		       " closed by the server with 1013, %" PRIu64 " closed otherwise, %" PRIu64
		       " not closed (the figures above are the other receivers')\n",
		       nslow, s->slow_1013, s->slow_other, nslow - s->slow_1013 - s->slow_other);
	if (s->seq.tail)
		printf("  undelivered   %" PRIu64 " of the lost were still missing when the drain "
		       "ended (%.1f s): a server backlog shows as latency growing run by run; "
		       "a longer --drain tells late from lost\n",
		       s->seq.tail, (double)cfg->drain_ns / 1e9);
	printf("  checks        lost %" PRIu64 "  dup %" PRIu64 "  reordered %" PRIu64
	       "  late %" PRIu64 "  misrouted %" PRIu64 "  closed-by-server %" PRIu64
	       "  errors %" PRIu64,
	       s->seq.lost, s->seq.dup, s->seq.reordered, s->seq.late, s->misrouted, s->peer_closed,
	       s->proto_errors);
	if (s->last_close_code)
		printf("  (last close code %u)", s->last_close_code);
	if (s->dropped)
		printf("  [dropped on purpose %" PRIu64 "]", s->dropped);
	if (s->foreign)
		printf("\n  note          %" PRIu64 " messages stamped by another run were ignored "
		       "(an earlier run's backlog still in the server)",
		       s->foreign);
	if (t->bench_cpu_percent >= 0)
		printf("\n  bench CPU     %.0f%% of one core over the window (all workers)",
		       t->bench_cpu_percent);
	if (m->ok)
		printf(
		    "\n  machine       load %.2f at start; during the run, machine-wide: %" PRIu64
		    " TCP retransmits, %" PRIu64 " packets dropped by the loopback backlog",
		    m->load1, m->retrans1 - m->retrans0, m->drops1 - m->drops0);
	if (partial)
		printf("\n  note          the run did not complete: partial figures");
	printf("\n  result        %s\n", failed ? "FAIL" : "ok");
}

/* Sleep until the deadline or a second, whichever comes first. */
static void nap_until(uint64_t deadline)
{
	uint64_t now = rr_bench_now_ns();
	uint64_t d = deadline > now ? deadline - now : 0;
	if (d > 50000000)
		d = 50000000;
	struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)d};
	nanosleep(&ts, NULL);
}

static bool all_set(const struct rr_bench_shared *sh, size_t off)
{
	for (uint32_t i = 0; i < sh->nslots; i++) {
		const int *f = (const int *)((const char *)&sh->slots[i] + off);
		if (!__atomic_load_n(f, __ATOMIC_ACQUIRE))
			return false;
	}
	return true;
}

int main(int argc, char **argv)
{
	struct rr_bench_cfg cfg;
	parse_args(argc, argv, &cfg);
	if (getrandom(&cfg.run_id, sizeof(cfg.run_id), 0) != sizeof(cfg.run_id))
		cfg.run_id = (uint32_t)(rr_bench_now_ns() ^ ((uint64_t)getpid() << 16));
	if (!cfg.run_id)
		cfg.run_id = 1; /* chat reads 0 as "no stamp" */

	uint32_t npubs = rr_bench_cfg_total_pubs(&cfg);
	size_t slots_sz = sizeof(struct rr_bench_shared) + cfg.procs * sizeof(struct rr_bench_slot);
	slots_sz = (slots_sz + 63) & ~(size_t)63;
	size_t shm_sz = slots_sz + (size_t)(npubs + 1) * sizeof(uint64_t);
	struct rr_bench_shared *sh =
	    mmap(NULL, shm_sz, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sh == MAP_FAILED) {
		perror("ringroom-bench: mmap");
		return 1;
	}
	sh->nslots = cfg.procs;
	sh->npubs = npubs;
	sh->pub_sent = (uint64_t *)((char *)sh + slots_sz);
	sh->phase = RR_BENCH_PH_CONNECT;
	sh->t_start = sh->t_warm = sh->t_end = sh->t_drain_end = UINT64_MAX;
	for (uint32_t i = 0; i < cfg.procs; i++) {
		rr_bench_hist_init(&sh->slots[i].lat);
		rr_bench_hist_init(&sh->slots[i].hs);
		rr_bench_hist_init(&sh->slots[i].ack);
	}

	struct idle_probe ip = {0};
	struct machine mach = {0};
	if (cfg.server_pid) {
		ip.rss_before_kb = rr_bench_rss_kb(cfg.server_pid);
		if (!ip.rss_before_kb)
			fprintf(stderr, "ringroom-bench: cannot read /proc/%d/status\n",
				cfg.server_pid);
	}

	struct sigaction sa = {.sa_handler = on_signal};
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	fflush(NULL);
	pid_t pids[64];
	pid_t parent = getpid();
	for (uint32_t i = 0; i < cfg.procs; i++) {
		pid_t pid = fork();
		if (pid < 0) {
			perror("ringroom-bench: fork");
			RR_STORE(sh->abort, 1);
			return 1;
		}
		if (pid == 0) {
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			if (getppid() != parent)
				_exit(1);
			signal(SIGINT, SIG_IGN); /* the parent decides when to stop */
			_exit(rr_bench_worker_run(&cfg, sh, i));
		}
		pids[i] = pid;
	}

	uint64_t t0 = rr_bench_now_ns();
	uint64_t next_live = t0 + NS_PER_S;
	uint64_t prev_rx = 0, prev_cy = 0;
	uint64_t connect_deadline =
	    t0 + cfg.connect_timeout_ns +
	    (uint64_t)rr_bench_cfg_total_conns(&cfg) * 2000000ull / cfg.procs + 5 * NS_PER_S;
	uint64_t ticks0 = 0;
	/* the bench's own CPU over the measured window: on a shared two-core
	 * machine it is part of what the figures mean */
	uint64_t wticks0 = 0, wticks1 = 0;
	bool wticks_ok = false;
	double wwindow = 0;
	bool worker_died = false, timed_out = false;
	struct totals t;
	int phase = RR_BENCH_PH_CONNECT;
	/* bounded: every phase has a deadline, and the run ends at t_end */
	while (phase != RR_BENCH_PH_EXIT) {
		uint64_t now = rr_bench_now_ns();
		if (interrupted) {
			fprintf(stderr, "ringroom-bench: interrupted\n");
			RR_STORE(sh->abort, 1);
			break;
		}
		for (uint32_t i = 0; i < cfg.procs; i++) {
			int st;
			if (pids[i] > 0 && waitpid(pids[i], &st, WNOHANG) == pids[i]) {
				pids[i] = 0;
				fprintf(stderr,
					"ringroom-bench: worker %u exited early (status %d)\n", i,
					WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
				worker_died = true;
			}
		}
		if (worker_died) {
			RR_STORE(sh->abort, 1);
			break;
		}
		if (phase == RR_BENCH_PH_CONNECT) {
			if (all_set(sh, offsetof(struct rr_bench_slot, ready)) ||
			    now > connect_deadline) {
				if (now > connect_deadline) {
					fprintf(stderr,
						"ringroom-bench: connect phase timed out\n");
					timed_out = true;
				}
				merge(sh, &t, false);
				if (t.s.conn_failed)
					fprintf(stderr,
						"ringroom-bench: %" PRIu64
						" connections FAILED to open\n",
						t.s.conn_failed);
				if (t.s.opened == 0 && cfg.mode != RR_BENCH_CHURN) {
					fprintf(stderr, "ringroom-bench: no connection opened; "
							"nothing to measure\n");
					RR_STORE(sh->abort, 1);
					timed_out = true;
					break;
				}
				machine_start(&mach);
				sh->t_start = now + 50000000ull;
				sh->t_warm = sh->t_start + cfg.warmup_ns;
				sh->t_end = sh->t_warm + cfg.duration_ns;
				phase = RR_BENCH_PH_RUN;
				RR_STORE(sh->phase, phase);
			}
		} else if (phase == RR_BENCH_PH_RUN) {
			if (!wticks_ok && now >= sh->t_warm) {
				wticks_ok = workers_ticks(pids, cfg.procs, &wticks0) == 0;
				wwindow = (double)now;
			}
			if (cfg.server_pid && !ip.ok && now >= sh->t_warm) {
				/* the warm-up lets the server settle before RSS is read */
				ip.rss_after_kb = rr_bench_rss_kb(cfg.server_pid);
				ip.ok = ip.rss_after_kb && ip.rss_before_kb &&
					read_cpu_ticks(cfg.server_pid, &ticks0) == 0;
			}
			if (now >= sh->t_end &&
			    all_set(sh, offsetof(struct rr_bench_slot, stopped))) {
				if (ip.ok) {
					uint64_t ticks1;
					if (read_cpu_ticks(cfg.server_pid, &ticks1) == 0) {
						ip.cpu_ticks = ticks1 - ticks0;
						ip.cpu_seconds_window =
						    (double)(now - sh->t_warm) / 1e9;
					} else {
						ip.ok = false;
					}
				}
				if (wticks_ok && workers_ticks(pids, cfg.procs, &wticks1) == 0)
					wwindow = ((double)now - wwindow) / 1e9;
				else
					wticks_ok = false;
				sh->t_drain_end = now + cfg.drain_ns;
				phase = RR_BENCH_PH_DRAIN;
				RR_STORE(sh->phase, phase);
			} else if (now > sh->t_end + cfg.drain_ns + 10 * NS_PER_S) {
				fprintf(stderr, "ringroom-bench: workers did not stop\n");
				timed_out = true;
				RR_STORE(sh->abort, 1);
				break;
			}
		} else if (phase == RR_BENCH_PH_DRAIN) {
			if (all_set(sh, offsetof(struct rr_bench_slot, done))) {
				machine_end(&mach);
				phase = RR_BENCH_PH_EXIT;
				RR_STORE(sh->phase, phase);
			} else if (now > sh->t_drain_end + 10 * NS_PER_S) {
				fprintf(stderr, "ringroom-bench: workers did not finish\n");
				timed_out = true;
				RR_STORE(sh->abort, 1);
				break;
			}
		}
		if (now >= next_live) {
			if (!cfg.quiet)
				live_line(&cfg, sh, &t, &prev_rx, &prev_cy, t0);
			next_live += NS_PER_S;
		}
		nap_until(next_live);
	}
	int status = 0;
	for (uint32_t i = 0; i < cfg.procs; i++) {
		int st;
		if (pids[i] > 0 && waitpid(pids[i], &st, 0) == pids[i] &&
		    !(WIFEXITED(st) && WEXITSTATUS(st) == 0))
			worker_died = true;
	}
	merge(sh, &t, true);
	t.bench_cpu_percent =
	    wticks_ok && wwindow > 0 && wticks1 >= wticks0
		? 100.0 * (double)(wticks1 - wticks0) / (double)sysconf(_SC_CLK_TCK) / wwindow
		: -1;
	const struct rr_bench_slot *s = &t.s;
	bool failed = worker_died || timed_out || interrupted || s->conn_failed ||
		      (cfg.mode == RR_BENCH_CHURN && s->cycles == 0) || s->peer_closed ||
		      s->proto_errors || s->misrouted || s->seq.lost || s->seq.dup || s->unacked ||
		      s->chat_errors || s->seq.reordered || s->seq.late || s->http_errors;
	print_report(&cfg, &t, cfg.mode == RR_BENCH_IDLE && cfg.server_pid ? &ip : NULL, &mach,
		     failed, interrupted || timed_out || worker_died);
	if (s->seq.lost || s->seq.dup || s->seq.reordered || s->seq.late)
		fprintf(stderr,
			"ringroom-bench: DELIVERY CHECK FAILED: %" PRIu64 " lost, %" PRIu64
			" duplicated, %" PRIu64 " reordered, %" PRIu64 " late\n",
			s->seq.lost, s->seq.dup, s->seq.reordered, s->seq.late);
	if (s->misrouted)
		fprintf(stderr, "ringroom-bench: %" PRIu64 " messages reached the wrong receiver\n",
			s->misrouted);
	if (s->http_errors || (cfg.mode == RR_BENCH_PUBLISH && s->unacked))
		fprintf(stderr,
			"ringroom-bench: HTTP ERRORS: %" PRIu64
			" answers other than 200 (last %d), "
			"%" PRIu64 " requests never answered\n",
			s->http_errors, s->http_last_status, s->unacked);
	if (s->conn_failed || s->peer_closed || s->proto_errors)
		fprintf(stderr,
			"ringroom-bench: CONNECTION ERRORS: %" PRIu64 " failed to open, %" PRIu64
			" closed by the server, %" PRIu64 " protocol/socket errors\n",
			s->conn_failed, s->peer_closed, s->proto_errors);
	if (failed)
		status = 1;
	munmap(sh, shm_sz);
	return status;
}
