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
 * Anything else is answered with "unknown".
 */
#include <ringroom/handler.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct counter_state {
	unsigned long long count; /* cached; room storage is the truth */
	bool loaded;
};

static const char key[] = "count";

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
static void on_load_then_incr(struct rr_room *room, void *arg, int res, const void *val,
			      size_t len)
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
	if (rr_kv_put(room, key, sizeof(key) - 1, buf, (size_t)n, on_put, NULL) < 0)
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
		snprintf(msg, sizeof(msg), "count %.*s", (int)(len < 32 ? len : 32), (const char *)val);
	reply(c, msg);
}

static void on_message(struct rr_room *room, struct rr_conn *c, int opcode, void *data,
		       size_t len)
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
			if (rr_kv_get(room, key, sizeof(key) - 1, on_load_then_incr, NULL) < 0)
				reply(c, "busy");
			return;
		}
		on_load_then_incr(room, NULL, 1, NULL, 0);
	} else if (strcmp(cmd, "get") == 0) {
		char *sid = strdup(rr_member_session(c));
		if (sid == NULL || rr_kv_get(room, key, sizeof(key) - 1, on_get, sid) < 0) {
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
};

const struct rr_handler *ringroom_handler(void);

const struct rr_handler *ringroom_handler(void)
{
	return &counter_handler;
}
