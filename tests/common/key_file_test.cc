#include "common/key_file.h"

#include <sys/stat.h>

#include <fstream>

#include <gtest/gtest.h>

#include "tests/support/temp_dir.h"

namespace tandem {
namespace {

class KeyFileTest : public ::testing::Test {
 protected:
  std::string Write(const std::string& text, mode_t mode) {
    const std::string path = scratch_.path() + "/web1.key";
    std::ofstream(path) << text;
    EXPECT_EQ(::chmod(path.c_str(), mode), 0);
    return path;
  }
  testing::TempDir scratch_;
};

TEST_F(KeyFileTest, PrivateKeyFileIsReadWithoutItsTrailingNewline) {
  auto key = ReadKeyFile(Write("  0123456789abcdefXYZ\n", 0600));
  ASSERT_TRUE(key.ok()) << key.status().ToString();
  EXPECT_EQ(*key, "0123456789abcdefXYZ");
  EXPECT_TRUE(ReadKeyFile(Write("0123456789abcdef", 0400)).ok());
}

TEST_F(KeyFileTest, KeyFileOthersMayReadIsRefusedWithTheFix) {
  for (mode_t mode : {0644, 0640, 0604, 0620}) {
    const std::string path = Write("0123456789abcdef0123456789abcdef", mode);
    auto key = ReadKeyFile(path);
    ASSERT_FALSE(key.ok()) << std::oct << mode;
    EXPECT_EQ(key.status().code(), Status::Code::kInvalidArgument);
    EXPECT_NE(key.status().message().find("chmod 600 " + path), std::string::npos) << key.status().ToString();
  }
}

TEST_F(KeyFileTest, KeyShorterThanSixteenBytesIsRefused) {
  auto key = ReadKeyFile(Write("fifteen bytes!!\n", 0600));
  ASSERT_FALSE(key.ok());
  EXPECT_NE(key.status().message().find("15 bytes long"), std::string::npos) << key.status().ToString();
  EXPECT_FALSE(CheckKeyLength("abc", "heartbeat.psk").ok());
  EXPECT_TRUE(CheckKeyLength("sixteen bytes!!!", "heartbeat.psk").ok());
}

TEST_F(KeyFileTest, MissingKeyFileOrADirectoryIsRefused) {
  EXPECT_FALSE(ReadKeyFile(scratch_.path() + "/absent.key").ok());
  EXPECT_FALSE(ReadKeyFile(scratch_.path()).ok());
}

}  // namespace
}  // namespace tandem
