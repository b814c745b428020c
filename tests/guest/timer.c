#include "timer.h"

#include "io.h"

#define PIT_HZ 1193182u
#define CALIBRATE_MS 30u

static uint32_t tsc_per_us = 1;
static uint32_t tsc_khz;
static uint64_t last_tsc;
static uint64_t acc_ticks; /* clamped ticks since init */
static uint64_t max_step;  /* 1 s of ticks */

/* PIT channel 2 in mode 0 counts down once; its output shows in port 0x61 bit 5 (the speaker stays off). */
static uint64_t measure_ticks(uint32_t ms) {
  uint32_t count = PIT_HZ * ms / 1000u;
  if (count > 0xffff) count = 0xffff;
  outb(0x61, (uint8_t)((inb(0x61) & ~0x02) | 0x01)); /* gate on, speaker off */
  outb(0x43, 0xb0);                                   /* channel 2, lo/hi, mode 0, binary */
  outb(0x42, (uint8_t)count);
  outb(0x42, (uint8_t)(count >> 8));
  uint64_t start = timer_rdtsc();
  /* Bounded: if the PIT never fires (should not happen) fall back after ~2^28 polls. */
  for (uint32_t i = 0; i < (1u << 28) && !(inb(0x61) & 0x20); ++i) {
  }
  return timer_rdtsc() - start;
}

void timer_init(void) {
  /* Polling overhead and vCPU preemption only ever lengthen a measurement (a lot when KVM emulates each guest
   * instruction), so the shortest of a few is the best estimate. */
  uint64_t ticks = measure_ticks(CALIBRATE_MS);
  for (int i = 0; i < 2; ++i) {
    uint64_t t = measure_ticks(CALIBRATE_MS);
    if (t < ticks) ticks = t;
  }
  uint64_t khz = udiv64_32(ticks, CALIBRATE_MS);
  if (khz < 1000) khz = 1000; /* at least 1 MHz: keeps the arithmetic sane if calibration failed */
  if (khz > 0xffffffffull) khz = 0xffffffffull;
  tsc_khz = (uint32_t)khz;
  tsc_per_us = tsc_khz / 1000u;
  max_step = (uint64_t)tsc_khz * 1000u;
  last_tsc = timer_rdtsc();
  acc_ticks = 0;
}

uint32_t timer_tsc_khz(void) { return tsc_khz; }

uint64_t timer_now_us(void) {
  uint64_t t = timer_rdtsc();
  uint64_t d = t - last_tsc;
  last_tsc = t;
  if ((int64_t)d < 0) d = 0;
  if (d > max_step) d = max_step;
  acc_ticks += d;
  return udiv64_32(acc_ticks, tsc_per_us);
}
