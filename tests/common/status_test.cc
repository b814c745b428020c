#include "common/status.h"

#include <gtest/gtest.h>

namespace tandem {
namespace {

Result<int> ParsePositive(int v) {
  if (v <= 0) return Status::InvalidArgument("not positive");
  return v;
}

Status UsesAssignOrReturn(int v, int* out) {
  TANDEM_ASSIGN_OR_RETURN(*out, ParsePositive(v));
  return Status::Ok();
}

TEST(StatusTest, ErrorCarriesCodeAndContext) {
  Status s = Status::Corruption("bad checksum").WithContext("epoch 7");
  EXPECT_FALSE(s.ok());
  EXPECT_TRUE(s.IsCorruption());
  EXPECT_EQ(s.ToString(), "Corruption: epoch 7: bad checksum");
}

TEST(StatusTest, ResultPropagatesErrorsThroughAssignOrReturn) {
  int out = 0;
  EXPECT_TRUE(UsesAssignOrReturn(5, &out).ok());
  EXPECT_EQ(out, 5);
  Status s = UsesAssignOrReturn(-1, &out);
  EXPECT_EQ(s.code(), Status::Code::kInvalidArgument);
  EXPECT_EQ(out, 5);
}

}  // namespace
}  // namespace tandem
