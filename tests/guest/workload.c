#include "workload.h"

#include "guest_layout.h"
#include "io.h"
#include "serial.h"
#include "service.h"
#include "timer.h"

/* On hosts where KVM emulates this guest instruction by instruction (~0.4 us each), the per-page loop is the
 * whole cost: it keeps everything in registers, rewrites 3 words, and looks at the TSC every 8 pages. */

#define PRINT_INTERVAL_MS 250u
#define TICK_EVERY_PAGES 8u
#define TICK_MASK ((TICK_EVERY_PAGES - 1u) * TANDEM_GUEST_PAGE_SIZE)
#define SELFTEST_BREAK_AFTER_US 1500000u
#define CREDIT_PER_PAGE 1000000ull /* rate credit is kept in millionths of a page */

static uint32_t npages;
static uint32_t rate;
static uint32_t fill_mode;
static uint32_t counter;         /* counter of the round in progress (or last finished) */
static int broken;
static uint32_t full_check_next; /* page whose every word the next scan checks, rotating (fill=full) */
static uint64_t tick_tsc;        /* TSC at the last status line */
static uint64_t tick_interval;   /* PRINT_INTERVAL_MS in TSC ticks */
static uint64_t scan_tsc;        /* TSC at the end of the last full scan */
static uint64_t scan_interval;   /* 0, or 9x the last scan's cost when that exceeds the print interval */
static uint64_t credit;
static uint64_t credit_cap;
static uint64_t credit_time_us;

static inline volatile uint32_t* page_at(uint32_t i) {
  return (volatile uint32_t*)(uintptr_t)(TANDEM_GUEST_PAGES_BASE + i * TANDEM_GUEST_PAGE_SIZE);
}

static inline uint32_t page_index(volatile const uint32_t* p) {
  return (uint32_t)((uintptr_t)p - TANDEM_GUEST_PAGES_BASE) / TANDEM_GUEST_PAGE_SIZE;
}

static void fill_page(volatile uint32_t* p, uint32_t value) {
  uint32_t* dst = (uint32_t*)(uintptr_t)(p + TANDEM_GUEST_W_FILL);
  uint32_t n = TANDEM_GUEST_W_TAIL - TANDEM_GUEST_W_FILL;
  __asm__ volatile("rep stosl" : "+D"(dst), "+c"(n) : "a"(value) : "memory");
}

/* fill=data: what a real program's pages hold, so that compression and XOR deltas see realistic bytes. The kind
 * of page is fixed per index (a third text, a third records of small integers and pointers, a quarter mostly
 * zero, the rest random like compressed data); the bytes are a function of (index, counter). Not verified: the
 * header and tail words carry the invariant. */
static const char text_chars[32] = "  eeetaoinshrdlcumwfgypbvk,.\nETA";

static void fill_data(volatile uint32_t* p, uint32_t i, uint32_t value) {
  uint32_t* w = (uint32_t*)(uintptr_t)(p + TANDEM_GUEST_W_FILL);
  uint32_t* const end = (uint32_t*)(uintptr_t)(p + TANDEM_GUEST_W_TAIL);
  uint32_t x = (i * TANDEM_GUEST_CHECK_COUNTER_MUL) ^ (value * TANDEM_GUEST_CHECK_INDEX_MUL) ^ 0x2545f491u;
  const uint32_t kind = (i * TANDEM_GUEST_CHECK_COUNTER_MUL) >> 28; /* 16 buckets */
  for (uint32_t n = 0; w != end; ++w, ++n) {
    x ^= x << 13, x ^= x >> 17, x ^= x << 5; /* xorshift32 */
    uint32_t v;
    if (kind < 5) /* text */
      v = (uint32_t)text_chars[x & 31u] | (uint32_t)text_chars[(x >> 8) & 31u] << 8 |
          (uint32_t)text_chars[(x >> 16) & 31u] << 16 | (uint32_t)text_chars[x >> 27] << 24;
    else if (kind < 10) /* records: pointer, small integer, zero, a field that counts */
      v = (n & 3u) == 0 ? 0x00200000u + (x & 0x000ffff0u) : (n & 3u) == 1 ? x & 0xffu : (n & 3u) == 2 ? 0 : value + n;
    else if (kind < 14) /* mostly zero: about 4 words set per page */
      v = (x & 0xffu) == 0 ? x : 0;
    else /* random */
      v = x;
    *w = v;
  }
}

static void write_whole_page(uint32_t i, uint32_t value) {
  volatile uint32_t* p = page_at(i);
  p[TANDEM_GUEST_W_MAGIC] = TANDEM_GUEST_MAGIC;
  p[TANDEM_GUEST_W_INDEX] = i;
  p[TANDEM_GUEST_W_PAGES] = npages;
  p[TANDEM_GUEST_W_COUNTER] = value;
  p[TANDEM_GUEST_W_CHECK] = tandem_guest_check(i, npages, value);
  p[TANDEM_GUEST_W_MODE] = fill_mode;
  if (fill_mode == TANDEM_GUEST_FILL_FULL) fill_page(p, value);
  if (fill_mode == TANDEM_GUEST_FILL_DATA && value != 0) fill_data(p, i, value); /* boot pass: rounds write it */
  p[TANDEM_GUEST_W_TAIL] = value;
}

static void report_broken(uint32_t i, uint32_t found, uint32_t expected) {
  serial_printf("INVARIANT BROKEN at page %u: %u vs %u\n", i, found, expected);
  broken = 1;
}

/* Every word of one page's header and tail, and of the fill either sampled or (full != 0) all of it. */
static int verify_page(uint32_t i, uint32_t expected, int full) {
  volatile const uint32_t* p = page_at(i);
  uint32_t v = p[TANDEM_GUEST_W_COUNTER];
  if (v != expected) return report_broken(i, v, expected), 0;
  if ((v = p[TANDEM_GUEST_W_TAIL]) != expected) return report_broken(i, v, expected), 0;
  if ((v = p[TANDEM_GUEST_W_MAGIC]) != TANDEM_GUEST_MAGIC) return report_broken(i, v, TANDEM_GUEST_MAGIC), 0;
  if ((v = p[TANDEM_GUEST_W_INDEX]) != i) return report_broken(i, v, i), 0;
  if ((v = p[TANDEM_GUEST_W_PAGES]) != npages) return report_broken(i, v, npages), 0;
  if ((v = p[TANDEM_GUEST_W_MODE]) != fill_mode) return report_broken(i, v, fill_mode), 0;
  uint32_t want = tandem_guest_check(i, npages, expected);
  if ((v = p[TANDEM_GUEST_W_CHECK]) != want) return report_broken(i, v, want), 0;
  if (fill_mode != TANDEM_GUEST_FILL_FULL) return 1;
  static const uint16_t samples[] = {TANDEM_GUEST_W_FILL, 256, 512, 768, TANDEM_GUEST_W_TAIL - 1};
  if (full) {
    for (uint32_t w = TANDEM_GUEST_W_FILL; w < TANDEM_GUEST_W_TAIL; ++w)
      if ((v = p[w]) != expected) return report_broken(i, v, expected), 0;
  } else {
    for (uint32_t s = 0; s < sizeof samples / sizeof samples[0]; ++s)
      if ((v = p[samples[s]]) != expected) return report_broken(i, v, expected), 0;
  }
  return 1;
}

/* The invariant over all pages, against what this CPU believes: pages [0, done) hold `counter`, the rest
 * counter - 1. A RAM snapshot restored from another epoch than the CPU state, a page the replica missed, or a
 * page mixed from two epochs fail here. */
static void verify_all(uint32_t done) {
  if (broken) return;
  uint32_t full = full_check_next++ % npages;
  for (uint32_t i = 0; i < npages; ++i)
    if (!verify_page(i, i < done ? counter : counter - 1u, i == full)) return;
}

/* About every 250 ms of wall time (also mid-round, also while rate-limited): a status line, and a full scan
 * unless the last one was expensive (KVM emulating every instruction: ~65 ms for 4096 pages), in which case
 * scans keep to about 10% of the time; the per-page check in do_round() still sees every page every round. */
static __attribute__((noinline)) void status(uint64_t t, uint32_t done) {
  tick_tsc = t;
  if (t - scan_tsc >= scan_interval) {
    verify_all(done);
    uint64_t end = timer_rdtsc();
    uint64_t cost = end - t;
    scan_tsc = end;
    scan_interval = cost * 9u > tick_interval ? cost * 9u : 0;
  }
  serial_printf(broken ? "counter=%u INVARIANT BROKEN\n" : "counter=%u ok\n", counter);
  service_status();
}

static inline void tick(uint32_t done) {
  service_poll(); /* requests are answered between pages: the page invariant does not depend on them */
  uint64_t t = timer_rdtsc();
  /* Also taken when the TSC went backwards (huge unsigned delta), e.g. resumed from an older snapshot. */
  if (t - tick_tsc >= tick_interval) status(t, done);
}

static __attribute__((noinline)) void wait_for_credit(uint32_t done) {
  for (;;) {
    tick(done);
    uint64_t now = timer_now_us();
    credit += (now - credit_time_us) * rate;
    credit_time_us = now;
    /* Cap the burst so a long pause (VM stopped, resumed elsewhere) does not turn into a catch-up storm. */
    if (credit > credit_cap) credit = credit_cap;
    if (credit >= CREDIT_PER_PAGE) break;
    cpu_relax();
  }
  credit -= CREDIT_PER_PAGE;
}

static __attribute__((noinline)) void precheck_failed(uint32_t i, volatile const uint32_t* p, uint32_t prev) {
  uint32_t v = p[TANDEM_GUEST_W_COUNTER];
  report_broken(i, v != prev ? v : p[TANDEM_GUEST_W_TAIL], prev);
}

/* One round: counter goes to c, pages 0..n-1 are rewritten in order. Specialised at compile time on the two
 * options so the common case (no rate limit, sparse) has no per-page branches for them, and written so that
 * everything stays in the 6 usable registers: about 15 instructions per page. */
static inline __attribute__((always_inline)) void do_round(uint32_t c, const int limited, const uint32_t fill) {
  const uint32_t prev = c - 1u;
  volatile uint32_t* p = page_at(0);
  volatile uint32_t* const end = page_at(npages);
  uint32_t check = tandem_guest_check(0, npages, c); /* += TANDEM_GUEST_CHECK_INDEX_MUL per page */
  for (; p != end; p += TANDEM_GUEST_PAGE_WORDS, check += TANDEM_GUEST_CHECK_INDEX_MUL) {
    if (limited) wait_for_credit(page_index(p));
    /* Cheap continuous check: the page about to be rewritten must still hold the previous round. */
    if (__builtin_expect(p[TANDEM_GUEST_W_COUNTER] != prev || p[TANDEM_GUEST_W_TAIL] != prev, 0) && !broken)
      precheck_failed(page_index(p), p, prev);
    p[TANDEM_GUEST_W_COUNTER] = c;
    p[TANDEM_GUEST_W_CHECK] = check;
    if (fill == TANDEM_GUEST_FILL_FULL) fill_page(p, c);
    if (fill == TANDEM_GUEST_FILL_DATA) fill_data(p, page_index(p), c);
    p[TANDEM_GUEST_W_TAIL] = c;
    /* Every TICK_EVERY_PAGES pages (the pages base is aligned to more than that many pages). */
    if (((uintptr_t)p & TICK_MASK) == TICK_MASK) tick(page_index(p) + 1u);
  }
}

/* rounds=N done: nothing is dirtied any more but the few words of the status line, so a live migration (a
 * precopy under TCG, where a round of GiBs takes seconds) converges; status lines and scans go on. */
static __attribute__((noreturn, noinline)) void idle(void) {
  serial_printf("tandem-guest idle: counter=%u, no more rounds\n", counter);
  for (;;) {
    tick(npages);
    cpu_relax();
  }
}

void workload_run(const struct workload_config* cfg) {
  npages = cfg->pages;
  rate = cfg->rate;
  fill_mode = cfg->fill;
  credit_cap = (uint64_t)rate * (CREDIT_PER_PAGE / 10u); /* 100 ms worth of pages */
  if (credit_cap < CREDIT_PER_PAGE) credit_cap = CREDIT_PER_PAGE;
  tick_interval = (uint64_t)timer_tsc_khz() * PRINT_INTERVAL_MS;
  counter = 0;
  for (uint32_t i = 0; i < npages; ++i) write_whole_page(i, 0);
  int selftest_pending = cfg->selftest_break;
  credit_time_us = timer_now_us();
  tick_tsc = timer_rdtsc() - tick_interval; /* first status line right away */
  for (;;) {
    tick(npages); /* between rounds every page holds `counter` */
    if (cfg->rounds && counter == cfg->rounds) idle();
    const uint32_t c = ++counter;
    if (rate)
      fill_mode == TANDEM_GUEST_FILL_FULL   ? do_round(c, 1, TANDEM_GUEST_FILL_FULL)
      : fill_mode == TANDEM_GUEST_FILL_DATA ? do_round(c, 1, TANDEM_GUEST_FILL_DATA)
                                            : do_round(c, 1, TANDEM_GUEST_FILL_SPARSE);
    else
      fill_mode == TANDEM_GUEST_FILL_FULL   ? do_round(c, 0, TANDEM_GUEST_FILL_FULL)
      : fill_mode == TANDEM_GUEST_FILL_DATA ? do_round(c, 0, TANDEM_GUEST_FILL_DATA)
                                            : do_round(c, 0, TANDEM_GUEST_FILL_SPARSE);
    if (cfg->panic_after_s && timer_now_us() >= (uint64_t)cfg->panic_after_s * 1000000u) {
      serial_printf("tandem-guest: PANIC on purpose (panic_after=%u) at counter=%u\n", cfg->panic_after_s, c);
      outb(0x505, 1); /* pvpanic: "guest panicked" */
      for (;;) __asm__ volatile("cli; hlt");
    }
    if (selftest_pending && timer_now_us() >= SELFTEST_BREAK_AFTER_US) {
      /* Simulate a replica that missed one dirty page: a page goes back one round. */
      selftest_pending = 0;
      serial_printf("tandem-guest selftest: page %u set back to %u\n", npages / 4, c - 1u);
      write_whole_page(npages / 4, c - 1u);
    }
  }
}
