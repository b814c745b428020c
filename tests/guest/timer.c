#include "timer.h"

#include "io.h"

#define PIT_HZ 1193182u
#define CALIBRATE_PIT_TICKS 11932u /* 10 ms: fits between COLO checkpoints down to epochs of ~12 ms */
#define CALIBRATE_GOOD 4u
#define CALIBRATE_ATTEMPTS 64u

static uint32_t tsc_per_us = 1;
static uint32_t tsc_khz;
static uint64_t last_tsc;
static uint64_t acc_ticks; /* clamped ticks since init */
static uint64_t max_step;  /* 1 s of ticks */

/* One reading of PIT channel 2's count, paired with the TSC. The vCPU can be preempted anywhere (for a long time
 * when the host is busy and KVM emulates each instruction), so each reading is bracketed by two TSC reads and
 * the tightest of a few is kept: its error is at most half its spread. */
struct pit_sample {
  uint64_t tsc;
  uint32_t count;
  uint32_t spread;
};

static struct pit_sample pit_sample(void) {
  struct pit_sample best = {0, 0, 0xffffffffu};
  for (int i = 0; i < 5; ++i) {
    uint64_t t0 = timer_rdtsc();
    outb(0x43, 0x80); /* latch channel 2 */
    uint32_t lo = inb(0x42);
    uint32_t hi = inb(0x42);
    uint64_t d = timer_rdtsc() - t0;
    uint32_t spread = d > 0xffffffffull ? 0xffffffffu : (uint32_t)d;
    if (spread < best.spread) {
      best.tsc = t0 + spread / 2u;
      best.count = lo | hi << 8;
      best.spread = spread;
    }
  }
  return best;
}

static uint32_t pit_count(void) {
  outb(0x43, 0x80);
  uint32_t lo = inb(0x42);
  return lo | (uint32_t)inb(0x42) << 8;
}

/* TSC kHz from ~10 ms of PIT channel 2 counting down once (mode 0; port 0x61 bit 5 shows it ran out), or 0 if
 * this attempt was spoilt. *spread: the two samples' uncertainty in TSC ticks. A count that goes up spoils it:
 * QEMU reloads the PIT when it stops and resumes the VM, which under COLO is every checkpoint (with 20 ms epochs
 * a 30 ms window never completed: the guest hung here). */
static uint32_t calibrate_once(uint32_t* spread) {
  outb(0x61, (uint8_t)((inb(0x61) & ~0x02) | 0x01)); /* gate on, speaker off */
  outb(0x43, 0xb0);                                   /* channel 2, lo/hi, mode 0, binary */
  outb(0x42, 0xff);
  outb(0x42, 0xff);
  struct pit_sample a = pit_sample();
  /* Bounded: the count drops 1193 per ms; stop polling after far more polls than 10 ms can take. */
  uint32_t last = a.count;
  for (uint32_t i = 0; i < (1u << 24) && !(inb(0x61) & 0x20); ++i) {
    uint32_t c = pit_count();
    if (c > last) return 0; /* reloaded */
    last = c;
    if (a.count - c >= CALIBRATE_PIT_TICKS) break;
  }
  struct pit_sample b = pit_sample();
  if ((inb(0x61) & 0x20) || b.count > last || b.count >= a.count || b.tsc <= a.tsc) return 0; /* spoilt */
  uint32_t pit_ticks = a.count - b.count;
  uint64_t khz = udiv64_32((b.tsc - a.tsc) * PIT_HZ, pit_ticks * 1000u);
  *spread = a.spread + b.spread;
  return khz > 0xffffffffull ? 0 : (uint32_t)khz;
}

void timer_init(void) {
  uint32_t best_spread = 0xffffffffu;
  uint32_t khz = 0;
  for (uint32_t i = 0, good = 0; i < CALIBRATE_ATTEMPTS && good < CALIBRATE_GOOD; ++i) {
    uint32_t spread = 0xffffffffu;
    uint32_t k = calibrate_once(&spread);
    if (!k) continue;
    good++;
    if (spread < best_spread) best_spread = spread, khz = k;
  }
  if (khz < 1000) khz = 1000000; /* PIT unusable: assume 1 GHz rather than dividing by nothing */
  tsc_khz = khz;
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
