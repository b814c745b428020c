// Counts every operator new of the test binary whose one source file includes this header (replacement
// allocation functions: include it from exactly one file per binary), and the bytes asked for, on all threads.
#pragma once

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <new>

inline std::atomic<uint64_t> g_allocations{0};
inline std::atomic<uint64_t> g_allocated_bytes{0};
inline std::atomic<bool> g_trap{false};  // debugging aid: abort on the next allocation

void* operator new(size_t n) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  g_allocated_bytes.fetch_add(n, std::memory_order_relaxed);
  if (g_trap.load(std::memory_order_relaxed)) abort();
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
// gcc 12 -O2 inlines the replaced operator new into std::vector and then flags the free() here as mismatched.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, size_t) noexcept { std::free(p); }
#pragma GCC diagnostic pop
