// A saved instance's record lives beside its overlays: it is listed and
// loaded like a live one, keeps its disks from being removed with its
// state, and goes only when restored or destroyed. A kept console log
// outlives its instance, replaces the one kept before it, goes when asked,
// and is one of a bounded number.
#include "runtime/instance_store.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/test_support.h"

namespace kiln {
namespace {

namespace fs = std::filesystem;

InstanceRecord saved_record(const std::string& name) {
  InstanceRecord record;
  record.spec.name = name;
  record.spec.id = random_hex(8);
  record.state = InstanceState::kSaved;
  record.saved_to = "/somewhere/" + name + ".save";
  record.save_id = random_hex(8);
  return record;
}

class InstanceStoreTest : public ::testing::Test {
 protected:
  InstanceStoreTest() : store_(dir_ / "run", dir_ / "state") {
    fs::create_directories(store_.paths("web").disk_dir);
    testing::write_text(store_.paths("web").disk_dir / "disk0.qcow2", "overlay");
  }
  testing::ScratchDir dir_;
  InstanceStore store_;
};

TEST_F(InstanceStoreTest, ASavedInstanceIsListedAndLoadsWithoutAStateDirectory) {
  InstanceRecord record = saved_record("web");
  ASSERT_TRUE(store_.mark_saved(record));
  EXPECT_EQ(store_.names(), std::vector<std::string>{"web"});
  auto loaded = store_.load("web");
  ASSERT_TRUE(loaded) << loaded.error().message;
  EXPECT_EQ(loaded->state, InstanceState::kSaved);
  EXPECT_EQ(loaded->saved_to, record.saved_to);
  EXPECT_EQ(loaded->save_id, record.save_id);
}

TEST_F(InstanceStoreTest, RemovingTheStateKeepsSavedDisksUntilTheSaveIsForgotten) {
  ASSERT_TRUE(store_.mark_saved(saved_record("web")));
  ASSERT_TRUE(store_.remove("web", /*keep_disks=*/false));
  EXPECT_TRUE(fs::exists(store_.paths("web").disk_dir / "disk0.qcow2"));
  ASSERT_TRUE(store_.forget_saved("web"));
  EXPECT_TRUE(store_.names().empty());
  EXPECT_FALSE(store_.load_saved("web"));
  ASSERT_TRUE(store_.remove("web", false));
  EXPECT_FALSE(fs::exists(store_.paths("web").disk_dir));
}

TEST_F(InstanceStoreTest, ALiveRecordComesBeforeASavedOne) {
  ASSERT_TRUE(store_.mark_saved(saved_record("web")));
  InstanceRecord live = saved_record("web");
  live.state = InstanceState::kRunning;
  fs::create_directories(store_.paths("web").state_dir);
  ASSERT_TRUE(store_.save(live));
  EXPECT_EQ(store_.names(), std::vector<std::string>{"web"});
  EXPECT_EQ(store_.load("web")->state, InstanceState::kRunning);
}

// An instance with a console log, as the supervisor leaves it.
void write_console_log(const InstanceStore& store, const std::string& name, const std::string& text) {
  fs::create_directories(store.paths(name).state_dir);
  testing::write_text(store.paths(name).console_log, text);
}

TEST_F(InstanceStoreTest, AKeptConsoleLogOutlivesItsInstance) {
  write_console_log(store_, "web", "Kernel panic - not syncing: Attempted to kill init!\n");
  auto kept = store_.keep_console_log("web");
  ASSERT_TRUE(kept) << kept.error().message;
  EXPECT_EQ(*kept, dir_ / "logs/web.console.log");  // beside the disks, which outlive a host reboot
  EXPECT_EQ(*kept, store_.paths("web").kept_console_log);
  ASSERT_TRUE(store_.remove("web", /*keep_disks=*/false));
  EXPECT_EQ(testing::read_text(*kept), "Kernel panic - not syncing: Attempted to kill init!\n");
  EXPECT_EQ(store_.kept_log_names(), std::vector<std::string>{"web"});
  EXPECT_TRUE(store_.names().empty());  // a kept log is no instance
}

TEST_F(InstanceStoreTest, KeepingAgainReplacesTheLogKeptBefore) {
  write_console_log(store_, "web", "first boot\n");
  ASSERT_TRUE(store_.keep_console_log("web"));
  write_console_log(store_, "web", "first boot\nsecond boot\n");
  ASSERT_TRUE(store_.keep_console_log("web"));
  EXPECT_EQ(testing::read_text(store_.paths("web").kept_console_log), "first boot\nsecond boot\n");
  EXPECT_EQ(testing::list_tree(dir_ / "logs"), std::vector<std::string>{"web.console.log"});  // no temporaries
}

TEST_F(InstanceStoreTest, RemovingAKeptLogSaysWhetherThereWasOne) {
  write_console_log(store_, "web", "boot\n");
  ASSERT_TRUE(store_.keep_console_log("web"));
  EXPECT_EQ(store_.remove_kept_console_log("web"), true);
  EXPECT_EQ(store_.remove_kept_console_log("web"), false);
  EXPECT_TRUE(store_.kept_log_names().empty());
  // A name that is not an instance's names no file either.
  auto outside = store_.remove_kept_console_log("../web");
  ASSERT_FALSE(outside);
  EXPECT_THAT(outside.error().message, ::testing::HasSubstr("bad instance name"));
}

TEST_F(InstanceStoreTest, AnInstanceWithoutAConsoleLogHasNoneToKeep) {
  EXPECT_FALSE(store_.keep_console_log("web"));
  EXPECT_TRUE(store_.kept_log_names().empty());
}

TEST_F(InstanceStoreTest, AtMostSoManyLogsAreKeptTheOldestGoingFirst) {
  fs::create_directories(dir_ / "logs");
  auto now = fs::file_time_type::clock::now();
  for (size_t i = 0; i < kKeptConsoleLogs; ++i) {
    fs::path old = dir_ / "logs" / fmt::format("old{:02}.console.log", i);
    testing::write_text(old, "old\n");
    fs::last_write_time(old, now - std::chrono::hours(100 - i));
  }
  write_console_log(store_, "web", "new\n");
  ASSERT_TRUE(store_.keep_console_log("web"));
  std::vector<std::string> kept = store_.kept_log_names();
  EXPECT_EQ(kept.size(), kKeptConsoleLogs);
  EXPECT_EQ(kept.front(), "old01");  // old00 was the oldest
  EXPECT_EQ(kept.back(), "web");
}

TEST_F(InstanceStoreTest, NoInstanceIsNamedAsSuch) {
  auto missing = store_.load("nobody");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().message, "no instance named nobody (see `kiln list`)");
  EXPECT_TRUE(store_.forget_saved("nobody"));  // nothing to forget is no error
}

}  // namespace
}  // namespace kiln
