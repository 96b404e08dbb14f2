/*
 * An example room handler, built as a shared object and mounted with
 *   ringroom --handler /counter/=./build/examples/libcounter_room.so
 * It uses only include/ringroom/handler.h. Text commands:
 *   "incr"            add one to the room's counter, stored in room storage,
 *                     and broadcast "count <n>" to every member
 *   "get"             answer "count <n>" (read back from storage)
 *   "tag <t1> <t2>"   replace this member's tags
 *   "to <tag> <text>" send <text> to the members carrying <tag>
 *   "who <tag>"       answer "members <n>" carrying <tag>
 *   "note <text>"     keep <text> as this member's attachment
 *   "mynote"          answer "note <text>" from the attachment
 *   "alarm <ms> <t>"  in <ms> milliseconds, broadcast "alarm <t>" and record
 *                     "fired:<t>" in room storage; answers "alarm id <id>".
 *                     A <t> starting with "flaky" fails its first attempt,
 *                     so the broker retries it.
 *   "cancel <id>"     cancel an alarm: "cancelled" or "no such alarm"
 *   "fired <t>"       answer "fired yes" or "fired no"
 * Anything else is answered with "unknown".
 */
#include <ringroom/handler.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct counter_state {
	unsigned long long count; /* cached; room storage is the truth */
	bool loaded;
	unsigned flaky_failures;
};

static const char count_key[] = "count";

static void reply(struct rr_conn *c, const char *text)
{
	rr_member_send(c, RR_TEXT, text, strlen(text));
}

static void on_put(struct rr_room *room, void *arg, int res, const void *val, size_t len)
{
	(void)arg;
	(void)val;
	(void)len;
	char msg[64];
	struct counter_state *st = rr_room_state(room);
	if (res < 0)
		snprintf(msg, sizeof(msg), "error storing: %d", res);
	else
		snprintf(msg, sizeof(msg), "count %llu", st->count);
	rr_room_broadcast(room, RR_TEXT, msg, strlen(msg), NULL);
}

/* The first incr of a room reads the stored count, then increments. */
static void on_load_then_incr(struct rr_room *room, void *arg, int res, const void *val, size_t len)
{
	struct counter_state *st = rr_room_state(room);
	(void)arg;
	if (res == 0 && len < 32) {
		char buf[32];
		memcpy(buf, val, len);
		buf[len] = '\0';
		st->count = strtoull(buf, NULL, 10);
	}
	st->loaded = true;
	st->count++;
	char buf[32];
	int n = snprintf(buf, sizeof(buf), "%llu", st->count);
	if (rr_kv_put(room, count_key, sizeof(count_key) - 1, buf, (size_t)n, on_put, NULL) < 0)
		rr_room_broadcast(room, RR_TEXT, "busy", 4, NULL);
}

static void on_get(struct rr_room *room, void *arg, int res, const void *val, size_t len)
{
	struct rr_conn *c = NULL;
	char msg[64];
	/* arg is a session id copy: the member may have left meanwhile */
	c = rr_room_member_by_session(room, arg);
	free(arg);
	if (c == NULL)
		return;
	if (res == -2 /* -ENOENT */)
		snprintf(msg, sizeof(msg), "count 0");
	else if (res < 0)
		snprintf(msg, sizeof(msg), "error reading: %d", res);
	else
		snprintf(msg, sizeof(msg), "count %.*s", (int)(len < 32 ? len : 32),
			 (const char *)val);
	reply(c, msg);
}

static void on_fired_get(struct rr_room *room, void *arg, int res, const void *val, size_t len)
{
	struct rr_conn *c = rr_room_member_by_session(room, arg);
	(void)val;
	(void)len;
	free(arg);
	if (c)
		reply(c, res == 0 ? "fired yes" : "fired no");
}

static int on_alarm(struct rr_room *room, uint64_t id, const void *payload, size_t len)
{
	struct counter_state *st = rr_room_state(room);
	char key[300], msg[300];
	(void)id;
	if (len > 200)
		len = 200;
	if (len >= 5 && memcmp(payload, "flaky", 5) == 0 && st->flaky_failures == 0) {
		st->flaky_failures++;
		return -11; /* -EAGAIN: the broker retries with back-off */
	}
	int n = snprintf(key, sizeof(key), "fired:%.*s", (int)len, (const char *)payload);
	if (rr_kv_put(room, key, (size_t)n, "1", 1, NULL, NULL) < 0)
		return -11;
	n = snprintf(msg, sizeof(msg), "alarm %.*s", (int)len, (const char *)payload);
	rr_room_broadcast(room, RR_TEXT, msg, (size_t)n, NULL);
	return 0;
}

static void on_message(struct rr_room *room, struct rr_conn *c, int opcode, void *data, size_t len)
{
	char cmd[512];
	if (opcode != RR_TEXT || len >= sizeof(cmd)) {
		reply(c, "unknown");
		return;
	}
	memcpy(cmd, data, len);
	cmd[len] = '\0';

	if (strcmp(cmd, "incr") == 0) {
		struct counter_state *st = rr_room_state(room);
		if (!st->loaded) {
			if (rr_kv_get(room, count_key, sizeof(count_key) - 1, on_load_then_incr,
				      NULL) < 0)
				reply(c, "busy");
			return;
		}
		on_load_then_incr(room, NULL, 1, NULL, 0);
	} else if (strcmp(cmd, "get") == 0) {
		char *sid = strdup(rr_member_session(c));
		if (sid == NULL ||
		    rr_kv_get(room, count_key, sizeof(count_key) - 1, on_get, sid) < 0) {
			free(sid);
			reply(c, "busy");
		}
	} else if (strncmp(cmd, "tag ", 4) == 0) {
		const char *tags[RR_TAGS_MAX];
		size_t n = 0;
		for (char *t = strtok(cmd + 4, " "); t && n < RR_TAGS_MAX; t = strtok(NULL, " "))
			tags[n++] = t;
		reply(c, rr_member_set_tags(c, tags, n) == 0 ? "tagged" : "bad tags");
	} else if (strncmp(cmd, "to ", 3) == 0) {
		char *tag = cmd + 3, *text = strchr(tag, ' ');
		if (text == NULL) {
			reply(c, "unknown");
			return;
		}
		*text++ = '\0';
		rr_room_broadcast_tag(room, tag, RR_TEXT, text, strlen(text), NULL);
	} else if (strncmp(cmd, "who ", 4) == 0) {
		char msg[64];
		snprintf(msg, sizeof(msg), "members %zu", rr_room_members(room, cmd + 4, NULL, 0));
		reply(c, msg);
	} else if (strncmp(cmd, "note ", 5) == 0) {
		reply(c, rr_member_set_attachment(c, cmd + 5, strlen(cmd + 5)) == 0 ? "noted"
										    : "too big");
	} else if (strcmp(cmd, "mynote") == 0) {
		size_t n;
		const char *p = rr_member_attachment(c, &n);
		char msg[600];
		snprintf(msg, sizeof(msg), "note %.*s", (int)n, p ? p : "");
		reply(c, msg);
	} else if (strncmp(cmd, "alarm ", 6) == 0) {
		char *end;
		unsigned long long ms = strtoull(cmd + 6, &end, 10);
		if (*end != ' ') {
			reply(c, "unknown");
			return;
		}
		uint64_t id;
		char msg[64];
		if (rr_alarm_set(room, rr_now_wall_ms() + ms, end + 1, strlen(end + 1), &id) < 0) {
			reply(c, "alarm refused");
			return;
		}
		snprintf(msg, sizeof(msg), "alarm id %llu", (unsigned long long)id);
		reply(c, msg);
	} else if (strncmp(cmd, "cancel ", 7) == 0) {
		uint64_t id = strtoull(cmd + 7, NULL, 10);
		reply(c, rr_alarm_cancel(room, id) == 0 ? "cancelled" : "no such alarm");
	} else if (strncmp(cmd, "fired ", 6) == 0) {
		char key[300];
		int n = snprintf(key, sizeof(key), "fired:%s", cmd + 6);
		char *sid = strdup(rr_member_session(c));
		if (sid == NULL || rr_kv_get(room, key, (size_t)n, on_fired_get, sid) < 0) {
			free(sid);
			reply(c, "busy");
		}
	} else {
		reply(c, "unknown");
	}
}

static const struct rr_handler counter_handler = {
    .abi = RR_HANDLER_ABI,
    .name = "counter",
    .state_size = sizeof(struct counter_state),
    .durable = false,
    .message = on_message,
    .alarm = on_alarm,
};

const struct rr_handler *ringroom_handler(void);

const struct rr_handler *ringroom_handler(void)
{
	return &counter_handler;
}
