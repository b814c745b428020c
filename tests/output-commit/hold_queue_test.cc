#include "output-commit/hold_queue.h"

#include <gtest/gtest.h>

#include <deque>
#include <random>
#include <vector>

namespace tandem::output_commit {
namespace {

std::vector<uint8_t> Record(uint32_t id, size_t len) {
  std::vector<uint8_t> r(len, uint8_t(id * 31));
  for (size_t i = 0; i < 4 && i < len; ++i) r[i] = uint8_t(id >> (8 * i));
  return r;
}

uint32_t IdOf(std::span<const uint8_t> r) {
  uint32_t id = 0;
  for (size_t i = 0; i < 4 && i < r.size(); ++i) id |= uint32_t(r[i]) << (8 * i);
  return id;
}

std::vector<uint32_t> ReleaseAll(HoldQueue& q, uint64_t acked) {
  std::vector<uint32_t> out;
  for (auto r = q.Peek(acked, false); !r.empty(); r = q.Peek(acked, false)) {
    out.push_back(IdOf(r));
    q.Pop();
  }
  return out;
}

TEST(HoldQueueTest, NothingLeavesBeforeItsEpochIsAcked) {
  HoldQueue q({.max_bytes = 1 << 16, .max_records = 16, .max_record_bytes = 1500});
  ASSERT_TRUE(q.Push(Record(1, 60)));
  ASSERT_TRUE(q.CloseEpoch(7).ok());
  ASSERT_TRUE(q.Push(Record(2, 60)));
  EXPECT_TRUE(ReleaseAll(q, 6).empty());
  EXPECT_EQ(ReleaseAll(q, 7), std::vector<uint32_t>{1});
  // Record 2 is in the open epoch: no ack releases it until a boundary closes it.
  EXPECT_TRUE(ReleaseAll(q, 1000).empty());
  ASSERT_TRUE(q.CloseEpoch(8).ok());
  EXPECT_EQ(ReleaseAll(q, 1000), std::vector<uint32_t>{2});
}

TEST(HoldQueueTest, EpochsMustIncrease) {
  HoldQueue q({.max_bytes = 4096, .max_records = 4, .max_record_bytes = 1500});
  ASSERT_TRUE(q.CloseEpoch(0).ok());
  ASSERT_TRUE(q.CloseEpoch(3).ok());
  EXPECT_EQ(q.CloseEpoch(3).code(), Status::Code::kInvalidArgument);
  EXPECT_EQ(q.CloseEpoch(2).code(), Status::Code::kInvalidArgument);
}

TEST(HoldQueueTest, FullByBytesOrRecordsRefusesWithoutKeepingAnything) {
  HoldQueue q({.max_bytes = 3000, .max_records = 3, .max_record_bytes = 1500});
  ASSERT_TRUE(q.Push(Record(1, 1500)));
  ASSERT_TRUE(q.Push(Record(2, 1400)));
  EXPECT_EQ(q.MaxFit(), 100u);
  EXPECT_FALSE(q.Push(Record(3, 101)));
  ASSERT_TRUE(q.Push(Record(3, 100)));
  EXPECT_EQ(q.MaxFit(), 0u);  // 3 records
  EXPECT_FALSE(q.Push(Record(4, 1)));
  EXPECT_EQ(q.counters().held_records, 3u);
  EXPECT_EQ(q.counters().held_bytes, 3000u);
  EXPECT_FALSE(q.Push({}));  // an empty record is no record
}

TEST(HoldQueueTest, DropAllForgetsClosedAndOpenRecords) {
  HoldQueue q({.max_bytes = 4096, .max_records = 8, .max_record_bytes = 1500});
  ASSERT_TRUE(q.Push(Record(1, 10)));
  ASSERT_TRUE(q.CloseEpoch(1).ok());
  ASSERT_TRUE(q.Push(Record(2, 10)));
  EXPECT_EQ(q.DropAll(), 2u);
  EXPECT_TRUE(ReleaseAll(q, 1).empty());
  EXPECT_EQ(q.counters().dropped_records, 2u);
  ASSERT_TRUE(q.Push(Record(3, 10)));
  ASSERT_TRUE(q.CloseEpoch(2).ok());
  EXPECT_EQ(ReleaseAll(q, 2), std::vector<uint32_t>{3});
}

TEST(HoldQueueTest, MaxEpochBytesIsTheLargestClosedEpoch) {
  HoldQueue q({.max_bytes = 1 << 16, .max_records = 64, .max_record_bytes = 1500});
  ASSERT_TRUE(q.Push(Record(1, 100)));
  ASSERT_TRUE(q.Push(Record(2, 200)));
  ASSERT_TRUE(q.CloseEpoch(1).ok());
  ASSERT_TRUE(q.Push(Record(3, 50)));
  ASSERT_TRUE(q.CloseEpoch(2).ok());
  EXPECT_EQ(q.counters().max_epoch_bytes, 300u);
}

// Random interleavings of pushes (random sizes), boundaries and acks against a plain model: a record leaves
// only once its epoch is closed and acked, always in push order, and the queue refuses a record only when the
// byte or record limit (not the ring's layout) says so.
TEST(HoldQueueTest, RandomInterleavingsMatchTheModel) {
  for (uint32_t seed = 1; seed <= 40; ++seed) {
    std::mt19937 rng(seed);
    const HoldLimits limits{.max_bytes = 8000 + rng() % 8000, .max_records = 4 + rng() % 60,
                            .max_record_bytes = 1 + rng() % 4000};
    HoldQueue q(limits);
    struct Held {
      uint32_t id;
      size_t len;
      uint64_t epoch;  // 0 = open
    };
    std::deque<Held> model;
    size_t model_bytes = 0;
    uint64_t epoch = 0, acked = 0;
    uint32_t next_id = 1;
    for (int step = 0; step < 4000; ++step) {
      const uint32_t op = rng() % 10;
      if (op < 6) {
        const size_t len = 1 + rng() % limits.max_record_bytes;
        const bool admitted = model_bytes + len <= limits.max_bytes && model.size() < limits.max_records;
        ASSERT_EQ(q.Push(Record(next_id, len)), admitted) << "seed " << seed << " step " << step;
        if (admitted) {
          model.push_back({next_id, len, 0});
          model_bytes += len;
        }
        ++next_id;
      } else if (op < 8) {
        ++epoch;
        ASSERT_TRUE(q.CloseEpoch(epoch).ok());
        for (auto& h : model) {
          if (h.epoch == 0) h.epoch = epoch;
        }
      } else {
        acked = std::max<uint64_t>(acked, epoch == 0 ? 0 : epoch - rng() % (epoch < 3 ? epoch : 3));
        for (auto r = q.Peek(acked, false); !r.empty(); r = q.Peek(acked, false)) {
          ASSERT_FALSE(model.empty());
          const Held& front = model.front();
          const uint32_t id_mask = front.len >= 4 ? ~0u : (1u << (8 * front.len)) - 1;  // short records: low bytes
          ASSERT_EQ(IdOf(r), front.id & id_mask) << "out of order, seed " << seed;
          ASSERT_EQ(r.size(), front.len);
          ASSERT_NE(front.epoch, 0u) << "an open-epoch record left, seed " << seed;
          ASSERT_LE(front.epoch, acked) << "released before its ack, seed " << seed;
          if (r.size() > 4) {
            ASSERT_EQ(r[r.size() - 1], uint8_t(front.id * 31)) << "payload";
          }
          q.Pop();
          model_bytes -= front.len;
          model.pop_front();
        }
        // Everything that may leave did.
        ASSERT_TRUE(model.empty() || model.front().epoch == 0 || model.front().epoch > acked);
      }
      ASSERT_EQ(q.counters().held_bytes, model_bytes);
      ASSERT_EQ(q.counters().held_records, model.size());
    }
  }
}

}  // namespace
}  // namespace tandem::output_commit
