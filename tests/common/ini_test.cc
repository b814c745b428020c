#include "common/ini.h"

#include <gtest/gtest.h>

namespace tandem {
namespace {

TEST(IniTest, KeysComeBackAsSectionDotKeyWithTheirLine) {
  auto entries = ParseIni("# comment\n[vm]\nname = web1 ; trailing\n\n[ primary ]\n  heartbeat=a, b  \n");
  ASSERT_TRUE(entries.ok()) << entries.status().ToString();
  ASSERT_EQ(entries->size(), 2u);
  EXPECT_EQ((*entries)[0].key, "vm.name");
  EXPECT_EQ((*entries)[0].value, "web1");
  EXPECT_EQ((*entries)[0].line, 3);
  EXPECT_EQ((*entries)[1].key, "primary.heartbeat");
  EXPECT_EQ((*entries)[1].value, "a, b");
  EXPECT_EQ((*entries)[1].line, 6);
}

TEST(IniTest, UnterminatedSectionAndLineWithoutEqualsNameTheirLine) {
  auto header = ParseIni("[vm]\nname = a\n[primary\n");
  ASSERT_FALSE(header.ok());
  EXPECT_NE(header.status().message().find("line 3: unterminated section header"), std::string::npos);
  auto no_equals = ParseIni("[vm]\nname\n");
  ASSERT_FALSE(no_equals.ok());
  EXPECT_NE(no_equals.status().message().find("line 2: expected key = value"), std::string::npos);
}

TEST(IniTest, ListsDropEmptyItemsAndSpaces) {
  EXPECT_EQ(SplitList(" a, ,b ,", ','), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(SplitList("-qmp  unix:x", ' '), (std::vector<std::string>{"-qmp", "unix:x"}));
  EXPECT_TRUE(SplitList("", ',').empty());
}

TEST(IniTest, BoundedIntegersRefuseJunkAndOutOfRange) {
  int v = 0;
  EXPECT_TRUE(ParseBoundedInt<int>("42", 1, 100, &v).ok());
  EXPECT_EQ(v, 42);
  EXPECT_FALSE(ParseBoundedInt<int>("42x", 1, 100, &v).ok());
  EXPECT_FALSE(ParseBoundedInt<int>("", 1, 100, &v).ok());
  Status range = ParseBoundedInt<int>("101", 1, 100, &v);
  ASSERT_FALSE(range.ok());
  EXPECT_NE(range.message().find("out of range [1, 100]"), std::string::npos);
  EXPECT_EQ(v, 42);
}

}  // namespace
}  // namespace tandem
