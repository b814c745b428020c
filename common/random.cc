#include "common/random.h"

#include <sys/random.h>
#include <unistd.h>

namespace tandem {

uint64_t RandomNonZeroId(Clock* clock) {
  uint64_t v = 0;
  for (int attempt = 0; attempt < 4 && v == 0; ++attempt) {
    if (getrandom(&v, sizeof(v), 0) != ssize_t(sizeof(v))) v = 0;
  }
  if (v == 0) {
    v = uint64_t(clock->WallNanos()) * 0x9E3779B97F4A7C15ull ^ uint64_t(getpid());
    if (v == 0) v = 1;
  }
  return v;
}

}  // namespace tandem
