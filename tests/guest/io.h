/* Port I/O and small freestanding helpers shared by the guest's files. */
#ifndef TANDEM_TESTS_GUEST_IO_H
#define TANDEM_TESTS_GUEST_IO_H

#include <stdint.h>

static inline void outb(uint16_t port, uint8_t v) { __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port)); }
static inline uint8_t inb(uint16_t port) {
  uint8_t v;
  __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
  return v;
}
static inline void outw(uint16_t port, uint16_t v) { __asm__ volatile("outw %0, %1" : : "a"(v), "Nd"(port)); }
static inline uint16_t inw(uint16_t port) {
  uint16_t v;
  __asm__ volatile("inw %1, %0" : "=a"(v) : "Nd"(port));
  return v;
}
static inline void outl(uint16_t port, uint32_t v) { __asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port)); }
static inline uint32_t inl(uint16_t port) {
  uint32_t v;
  __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port));
  return v;
}
/* Orders the guest's stores to shared rings against the device (x86 keeps stores in order; the compiler must). */
static inline void compiler_barrier(void) { __asm__ volatile("" ::: "memory"); }
static inline void cpu_relax(void) { __asm__ volatile("pause" ::: "memory"); }

/* 64/32 -> 64 division without libgcc (not available for -m32 without gcc-multilib): two DIVL steps. */
static inline uint64_t udiv64_32(uint64_t n, uint32_t d) {
  uint32_t hi = (uint32_t)(n >> 32), lo = (uint32_t)n;
  uint32_t qhi = hi / d, r = hi % d, qlo;
  __asm__("divl %4" : "=a"(qlo), "=d"(r) : "a"(lo), "d"(r), "rm"(d));
  return ((uint64_t)qhi << 32) | qlo;
}

#endif
