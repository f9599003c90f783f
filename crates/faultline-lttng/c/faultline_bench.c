/*
 * faultline LTTng-UST comparison benchmark.
 *
 * Usage: faultline_bench KIND THREADS EVENTS_PER_THREAD WARMUP_PER_THREAD REGISTER_WAIT_MS [RATE]
 *   KIND               "int" or "string"
 *   THREADS            1..1024
 *   EVENTS_PER_THREAD  timed events emitted by each thread
 *   WARMUP_PER_THREAD  untimed events emitted by each thread before the timed loop
 *   REGISTER_WAIT_MS   how long to wait for the tracepoint to become enabled
 *   RATE               events per second per thread in the timed loop (0 or absent:
 *                      as fast as possible)
 *
 * Every thread emits WARMUP_PER_THREAD events, waits at a barrier, then emits
 * EVENTS_PER_THREAD events between two clock_gettime(CLOCK_MONOTONIC) reads. When paced,
 * the thread reads the clock every PACE_BATCH events and spins until that batch is due
 * (event i is due at start + i / RATE); a thread that falls behind does not wait.
 * Threads are pinned one per allowed CPU when THREADS <= allowed CPUs.
 *
 * On success the last line on stdout is:
 *   FAULTLINE_LTTNG_RESULT kind=K threads=N events_per_thread=E warmup_per_thread=W
 *     pinned=0|1 emitted=T ns_per_event=a,b,...      (one line)
 * Exit codes: 0 ok, 2 usage, 3 tracepoint never enabled, 4 system error.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define LTTNG_UST_TRACEPOINT_DEFINE
#define LTTNG_UST_TRACEPOINT_CREATE_PROBES
#include "faultline_bench_tp.h"

#define MAX_THREADS 1024
#define PACE_BATCH 64

enum kind { KIND_INT, KIND_STRING };

struct worker {
	pthread_t tid;
	int index;
	int cpu; /* -1: not pinned */
	enum kind kind;
	uint64_t events;
	uint64_t warmup;
	uint64_t rate; /* events per second, 0: unpaced */
	pthread_barrier_t *barrier;
	int64_t elapsed_ns;
	int error;
	char pad[64];
};

/* 32 characters + NUL. */
static const char payload[33] = "faultline-bench-32-byte-payload!";

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int parse_u64(const char *s, uint64_t *out)
{
	char *end = NULL;
	unsigned long long v;

	if (s == NULL || *s == '\0' || *s == '-')
		return -1;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0 || end == NULL || *end != '\0')
		return -1;
	*out = (uint64_t)v;
	return 0;
}

static void emit(enum kind kind, uint64_t seq)
{
	if (kind == KIND_INT)
		lttng_ust_tracepoint(faultline_bench, int_event, seq);
	else
		lttng_ust_tracepoint(faultline_bench, string_event, seq, payload);
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	uint64_t i;
	int64_t start, end;
	int ret;

	if (w->cpu >= 0) {
		cpu_set_t set;

		CPU_ZERO(&set);
		CPU_SET(w->cpu, &set);
		ret = pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
		if (ret != 0) {
			fprintf(stderr, "faultline_bench: pin thread %d to cpu %d: %s\n",
				w->index, w->cpu, strerror(ret));
			w->error = 1;
		}
	}

	for (i = 0; i < w->warmup; i++)
		emit(w->kind, i);

	ret = pthread_barrier_wait(w->barrier);
	if (ret != 0 && ret != PTHREAD_BARRIER_SERIAL_THREAD) {
		w->error = 1;
		return NULL;
	}

	start = now_ns();
	if (w->rate != 0) {
		const double ns_per_event = 1e9 / (double)w->rate;

		for (i = 0; i < w->events; i++) {
			if (i % PACE_BATCH == 0) {
				const int64_t due = start + (int64_t)((double)i * ns_per_event);

				while (now_ns() < due)
					;
			}
			emit(w->kind, i);
		}
	} else if (w->kind == KIND_INT) {
		for (i = 0; i < w->events; i++)
			lttng_ust_tracepoint(faultline_bench, int_event, i);
	} else {
		for (i = 0; i < w->events; i++)
			lttng_ust_tracepoint(faultline_bench, string_event, i, payload);
	}
	end = now_ns();
	w->elapsed_ns = end - start;
	return NULL;
}

static int kind_enabled(enum kind kind)
{
	if (kind == KIND_INT)
		return lttng_ust_tracepoint_enabled(faultline_bench, int_event) ? 1 : 0;
	return lttng_ust_tracepoint_enabled(faultline_bench, string_event) ? 1 : 0;
}

int main(int argc, char **argv)
{
	static struct worker workers[MAX_THREADS];
	pthread_barrier_t barrier;
	uint64_t threads, events, warmup, wait_ms, rate = 0, waited_ms = 0;
	enum kind kind;
	cpu_set_t allowed;
	int allowed_cpus[CPU_SETSIZE];
	int n_allowed = 0, pinned, c, ret;
	uint64_t t;

	if (argc != 6 && argc != 7) {
		fprintf(stderr, "usage: %s int|string THREADS EVENTS_PER_THREAD WARMUP_PER_THREAD REGISTER_WAIT_MS [RATE]\n",
			argc > 0 ? argv[0] : "faultline_bench");
		return 2;
	}
	if (strcmp(argv[1], "int") == 0) {
		kind = KIND_INT;
	} else if (strcmp(argv[1], "string") == 0) {
		kind = KIND_STRING;
	} else {
		fprintf(stderr, "faultline_bench: unknown event kind '%s'\n", argv[1]);
		return 2;
	}
	if (parse_u64(argv[2], &threads) || threads < 1 || threads > MAX_THREADS ||
	    parse_u64(argv[3], &events) || events < 1 ||
	    parse_u64(argv[4], &warmup) || parse_u64(argv[5], &wait_ms) ||
	    (argc == 7 && parse_u64(argv[6], &rate))) {
		fprintf(stderr, "faultline_bench: bad numeric argument\n");
		return 2;
	}

	/*
	 * liblttng-ust's constructor has already waited (up to
	 * LTTNG_UST_REGISTER_TIMEOUT) for the session daemon. Make sure the
	 * tracepoint really is enabled before anything is timed.
	 */
	while (!kind_enabled(kind)) {
		if (waited_ms >= wait_ms) {
			fprintf(stderr, "faultline_bench: tracepoint not enabled after %llu ms "
				"(application did not register with lttng-sessiond?)\n",
				(unsigned long long)waited_ms);
			return 3;
		}
		usleep(10000);
		waited_ms += 10;
	}

	CPU_ZERO(&allowed);
	if (sched_getaffinity(0, sizeof(allowed), &allowed) == 0) {
		for (c = 0; c < CPU_SETSIZE; c++)
			if (CPU_ISSET(c, &allowed))
				allowed_cpus[n_allowed++] = c;
	}
	pinned = n_allowed > 0 && threads <= (uint64_t)n_allowed;

	ret = pthread_barrier_init(&barrier, NULL, (unsigned)threads);
	if (ret != 0) {
		fprintf(stderr, "faultline_bench: barrier: %s\n", strerror(ret));
		return 4;
	}
	for (t = 0; t < threads; t++) {
		struct worker *w = &workers[t];

		w->index = (int)t;
		w->cpu = pinned ? allowed_cpus[t] : -1;
		w->kind = kind;
		w->events = events;
		w->warmup = warmup;
		w->rate = rate;
		w->barrier = &barrier;
		ret = pthread_create(&w->tid, NULL, worker_main, w);
		if (ret != 0) {
			fprintf(stderr, "faultline_bench: pthread_create: %s\n", strerror(ret));
			/* Threads already started are blocked on the barrier: exit hard. */
			_exit(4);
		}
	}
	for (t = 0; t < threads; t++)
		pthread_join(workers[t].tid, NULL);
	pthread_barrier_destroy(&barrier);

	for (t = 0; t < threads; t++) {
		if (workers[t].error)
			return 4;
	}

	printf("FAULTLINE_LTTNG_RESULT kind=%s threads=%llu events_per_thread=%llu "
	       "warmup_per_thread=%llu pinned=%d emitted=%llu ns_per_event=",
	       kind == KIND_INT ? "int" : "string", (unsigned long long)threads,
	       (unsigned long long)events, (unsigned long long)warmup, pinned,
	       (unsigned long long)(threads * (events + warmup)));
	for (t = 0; t < threads; t++)
		printf("%s%.3f", t ? "," : "", (double)workers[t].elapsed_ns / (double)events);
	printf("\n");
	fflush(stdout);
	return 0;
}
