/* Wall time for the guest: the TSC, calibrated once against PIT channel 2.
 *
 * Time is accumulated from TSC deltas, each clamped to [0, 1 s], so the clock stays monotonic and never jumps
 * far when the VM is paused, migrated or resumed from a snapshot on another host (the TSC may then stand still,
 * jump forward or even go backwards). */
#ifndef TANDEM_TESTS_GUEST_TIMER_H
#define TANDEM_TESTS_GUEST_TIMER_H

#include <stdint.h>

static inline uint64_t timer_rdtsc(void) {
  uint32_t lo, hi;
  __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
  return ((uint64_t)hi << 32) | lo;
}

void timer_init(void);
/* TSC ticks per millisecond (calibrated). Hot loops compare raw TSC deltas against a multiple of this: on hosts
 * where KVM emulates the guest instruction by instruction, timer_now_us() per page would dominate. */
uint32_t timer_tsc_khz(void);
/* Microseconds since timer_init(), monotonic. */
uint64_t timer_now_us(void);

#endif
