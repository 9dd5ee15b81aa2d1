// A saved instance's record lives beside its overlays: it is listed and
// loaded like a live one, keeps its disks from being removed with its
// state, and goes only when restored or destroyed.
#include "runtime/instance_store.h"

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

TEST_F(InstanceStoreTest, NoInstanceIsNamedAsSuch) {
  auto missing = store_.load("nobody");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().message, "no instance named nobody (see `kiln list`)");
  EXPECT_TRUE(store_.forget_saved("nobody"));  // nothing to forget is no error
}

}  // namespace
}  // namespace kiln
