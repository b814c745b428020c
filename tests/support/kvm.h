// Whether the COLO checkpoint path can run on this machine. Tests that need it skip LOUDLY when it cannot.
#pragma once

#include <cstdio>
#include <string>

namespace tandem::testing {

// "" when KVM really runs the project's test guest; otherwise why not. TANDEM_KVM=usable|unusable (set once by
// scripts/test) answers without probing; else scripts/probe-kvm boots the guest (once per process).
std::string KvmUnusableReason();

}  // namespace tandem::testing

// Skips the test LOUDLY (on stderr, where ctest's output shows it, and as GoogleTest's skip message) when
// `reason_expr` yields a non-empty std::string: why what the test needs cannot run here.
#define TANDEM_SKIP_UNLESS_AVAILABLE(reason_expr, what)                  \
  do {                                                                   \
    if (std::string why = (reason_expr); !why.empty()) {                 \
      fprintf(stderr, "\n!!! SKIPPED: %s%s\n", what, why.c_str());     \
      GTEST_SKIP() << why;                                               \
    }                                                                    \
  } while (0)

#define TANDEM_REQUIRE_KVM() TANDEM_SKIP_UNLESS_AVAILABLE(::tandem::testing::KvmUnusableReason(), "")
