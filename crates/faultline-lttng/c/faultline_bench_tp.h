/*
 * Tracepoint provider for the faultline LTTng-UST comparison benchmark.
 *
 * Two events:
 *   faultline_bench:int_event    { seq: u64 }
 *   faultline_bench:string_event { seq: u64, msg: string }
 */
#undef LTTNG_UST_TRACEPOINT_PROVIDER
#define LTTNG_UST_TRACEPOINT_PROVIDER faultline_bench

#undef LTTNG_UST_TRACEPOINT_INCLUDE
#define LTTNG_UST_TRACEPOINT_INCLUDE "./faultline_bench_tp.h"

#if !defined(FAULTLINE_BENCH_TP_H) || defined(LTTNG_UST_TRACEPOINT_HEADER_MULTI_READ)
#define FAULTLINE_BENCH_TP_H

#include <stdint.h>
#include <lttng/tracepoint.h>

LTTNG_UST_TRACEPOINT_EVENT(
	faultline_bench,
	int_event,
	LTTNG_UST_TP_ARGS(
		uint64_t, seq_arg
	),
	LTTNG_UST_TP_FIELDS(
		lttng_ust_field_integer(uint64_t, seq, seq_arg)
	)
)

LTTNG_UST_TRACEPOINT_EVENT(
	faultline_bench,
	string_event,
	LTTNG_UST_TP_ARGS(
		uint64_t, seq_arg,
		const char *, msg_arg
	),
	LTTNG_UST_TP_FIELDS(
		lttng_ust_field_integer(uint64_t, seq, seq_arg)
		lttng_ust_field_string(msg, msg_arg)
	)
)

#endif /* FAULTLINE_BENCH_TP_H */

#include <lttng/tracepoint-event.h>
