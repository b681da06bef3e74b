/* Sample mode: each thread counts down the bytes it allocates; when the
 * count goes below zero the allocation is sampled (stack captured, block
 * recorded) and a new countdown is drawn from an exponential distribution
 * with mean sample_rate, as tcmalloc, jemalloc and Go do. A sampled block of
 * size s stands for 1/(1-exp(-s/rate)) blocks like it (the probability that
 * a sample point fell inside it is 1-exp(-s/rate)): see doc/profiles.md.
 *
 * Frees must find sampled blocks without a lock: a counting filter indexed
 * by address bits is below HS_FILTER_CLEAN for every sampled live address
 * (and, rarely, for others); only then does free take the table's shard
 * lock (hs.h). */
#define _GNU_SOURCE
#include <math.h>
#include <time.h>
#include <unistd.h>

#include "hs.h"

int hs_sampling;
double hs_sample_rate = 524288.0;
/* Far below zero until the thread's first countdown is drawn (and always
 * in full mode): malloc's fast path is never taken then, whatever sizes
 * (even above LONG_MAX) are asked for. */
HS_TLS long hs_until_sample = HS_COUNTDOWN_UNSET;
uint8_t hs_sampled_filter[1u << HS_FILTER_BITS]; /* in .bss: no pointer to load in free() */
static HS_TLS uint64_t rng;

void hs_sampler_init(void) {
  hs_sampling = hs_opt.mode == HS_MODE_SAMPLE;
  hs_sample_rate = hs_opt.sample_rate ? (double)hs_opt.sample_rate : 524288.0;
}

static double uniform(void) {
  if (!rng) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    rng = (uint64_t)ts.tv_nsec * 0x9E3779B97F4A7C15ull ^ (uint64_t)(uintptr_t)&rng ^ (uint64_t)gettid();
    if (!rng) rng = 1;
  }
  /* xorshift64* */
  rng ^= rng >> 12;
  rng ^= rng << 25;
  rng ^= rng >> 27;
  uint64_t r = rng * 2685821657736338717ull;
  return ((double)(r >> 11) + 0.5) / 9007199254740992.0; /* (0, 1) */
}

long hs_next_sample_interval(void) {
  double v = -log(uniform()) * hs_sample_rate;
  if (v > 1e15) v = 1e15;
  return (long)v;
}

double hs_sample_weight(size_t size) {
  if (!hs_sampling) return 1.0;
  double p = 1.0 - exp(-(double)size / hs_sample_rate);
  return p > 0 ? 1.0 / p : 1.0;
}
