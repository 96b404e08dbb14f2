/* Connections per client address: see iplimit.h. */
#include "net/iplimit.h"
#include "core/hash.h"
#include "core/assert.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define IPLIMIT_BUCKETS 65536

struct rr_ip_entry {
	struct rr_ip_entry *next;
	uint8_t addr[16];
	uint32_t count;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct rr_ip_entry **buckets;
static uint32_t max_per_ip;

int rr_iplimit_init(uint32_t limit)
{
	max_per_ip = limit;
	if (limit == 0)
		return 0;
	buckets = calloc(IPLIMIT_BUCKETS, sizeof(*buckets));
	return buckets ? 0 : -1;
}

void rr_iplimit_free(void)
{
	if (buckets == NULL)
		return;
	for (uint32_t i = 0; i < IPLIMIT_BUCKETS; i++) {
		struct rr_ip_entry *e = buckets[i];
		while (e) {
			struct rr_ip_entry *next = e->next;
			free(e);
			e = next;
		}
	}
	free(buckets);
	buckets = NULL;
}

static void key_of(const struct sockaddr *sa, uint8_t out[16])
{
	memset(out, 0, 16);
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
		out[10] = 0xff;
		out[11] = 0xff;
		memcpy(out + 12, &in->sin_addr, 4);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
		memcpy(out, &in6->sin6_addr, 16);
	}
}

static uint32_t hash_of(const uint8_t k[16])
{
	return (uint32_t)rr_hash(k, 16) & (IPLIMIT_BUCKETS - 1);
}

struct rr_ip_entry *rr_iplimit_acquire(const struct sockaddr *sa, bool *over)
{
	uint8_t k[16];
	*over = false;
	if (buckets == NULL)
		return NULL;
	key_of(sa, k);
	uint32_t h = hash_of(k);
	pthread_mutex_lock(&lock);
	struct rr_ip_entry *e = buckets[h];
	while (e && memcmp(e->addr, k, 16) != 0)
		e = e->next;
	if (e == NULL) {
		e = calloc(1, sizeof(*e));
		if (e == NULL) {
			pthread_mutex_unlock(&lock);
			return NULL;
		}
		memcpy(e->addr, k, 16);
		e->next = buckets[h];
		buckets[h] = e;
	}
	e->count++;
	*over = e->count > max_per_ip;
	pthread_mutex_unlock(&lock);
	return e;
}

void rr_iplimit_release(struct rr_ip_entry *e)
{
	if (e == NULL)
		return;
	pthread_mutex_lock(&lock);
	rr_assert(e->count > 0);
	if (--e->count == 0) {
		struct rr_ip_entry **pp = &buckets[hash_of(e->addr)];
		while (*pp != e)
			pp = &(*pp)->next;
		*pp = e->next;
		free(e);
	}
	pthread_mutex_unlock(&lock);
}
