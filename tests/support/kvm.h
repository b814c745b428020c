// Whether the COLO checkpoint path can run on this machine. Tests that need it skip LOUDLY when it cannot.
#pragma once

#include <cstdio>
#include <string>

namespace tandem::testing {

// "" when KVM really runs the project's test guest; otherwise why not. TANDEM_KVM=usable|unusable (set once by
// scripts/test) answers without probing; else scripts/probe-kvm boots the guest (once per process).
std::string KvmUnusableReason();

}  // namespace tandem::testing

#define TANDEM_REQUIRE_KVM()                                                       \
  do {                                                                             \
    if (std::string why = ::tandem::testing::KvmUnusableReason(); !why.empty()) { \
      fprintf(stderr, "\n!!! SKIPPED: %s\n", why.c_str());                         \
      GTEST_SKIP() << why;                                                         \
    }                                                                              \
  } while (0)
