// The snapshot store: which instances a snapshot may serve, how its record
// reads, and when its files or what it was made from no longer check out.
// (Making and resuming one needs qemu: tests/integration/snapshot_test.cc.)
#include "runtime/snapshot.h"

#include <sys/stat.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "base/hash.h"
#include "base/subprocess.h"
#include "tests/test_support.h"

namespace kiln {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

InstanceSpec resumable() {
  InstanceSpec spec;
  spec.backend = BackendKind::kQemu;
  spec.architecture = "amd64";
  spec.disks = {DiskSpec{.base = "/images/web/disk.raw"}};
  return spec;
}

TEST(SnapshotRefusal, OnlyAnAmd64QemuInstanceWithOneDiskAndNoMoreNicsThanSlotsIsResumed) {
  EXPECT_EQ(snapshot_refusal(resumable()), "");
  InstanceSpec uml = resumable();
  uml.backend = BackendKind::kUml;
  EXPECT_THAT(snapshot_refusal(uml), HasSubstr("runs under UML"));
  InstanceSpec arm = resumable();
  arm.architecture = "arm64";
  EXPECT_THAT(snapshot_refusal(arm), HasSubstr("amd64 images only (this one is arm64)"));
  InstanceSpec uefi = resumable();
  uefi.firmware = true;
  EXPECT_THAT(snapshot_refusal(uefi), HasSubstr("UEFI"));
  InstanceSpec nics = resumable();
  nics.network.nics.resize(kSnapshotNicSlots, NicSpec{.mac = "00:16:3e:01:02:03"});
  EXPECT_EQ(snapshot_refusal(nics), "");
  nics.network.nics.push_back(NicSpec{.mac = "00:16:3e:01:02:04"});
  EXPECT_THAT(snapshot_refusal(nics), HasSubstr("room for 4 NICs, and this instance has 5"));
}

// A snapshot directory as make_snapshot leaves it: two files and the record
// of their sha256, the image's files' and qemu's identity.
class SnapshotStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    testing::write_text(dir_ / "image/disk.raw", "the image's disk\n");
    testing::write_text(dir_ / "qemu", "#!/bin/sh\n");
    fs::permissions(dir_ / "qemu", fs::perms(0755));
    make("aaaa", 1024, 100);
    make("bbbb", 512, 200);
  }

  void make(const std::string& key, int memory, int64_t made_at) {
    fs::path at = dir_ / "snapshots" / key;
    testing::write_text(at / "state.save", "saved memory of " + key);
    testing::write_text(at / "disk0.qcow2", "disk of " + key);
    nlohmann::json record = {
        {"image", (dir_ / "image").string()},
        {"memory_mib", memory},
        {"vcpus", 2},
        {"qemu", "QEMU emulator version 7.2.22"},
        {"made_at", made_at},
        {"seed_size", 4194304},
        {"sha256", {{"state.save", *file_digest_hex(at / "state.save")}, {"disk0.qcow2", *file_digest_hex(at / "disk0.qcow2")}}},
        {"image_sha256", {{(dir_ / "image/disk.raw").string(), *file_digest_hex(dir_ / "image/disk.raw")}}},
        {"qemu_identity", *program_identity((dir_ / "qemu").string())}};
    testing::write_text(at / "snapshot.json", record.dump(2));
  }

  SnapshotEntry entry(const std::string& key) const {
    std::optional<SnapshotEntry> found = store_.find(key);
    EXPECT_TRUE(found) << key;
    return found ? *found : SnapshotEntry{};
  }

  testing::ScratchDir dir_;
  SnapshotStore store_{dir_ / "snapshots"};
  FileHashCache hashes_{dir_ / "hashes"};
};

TEST_F(SnapshotStoreTest, ListsNewestFirstWithTheirShapeAndSize) {
  std::vector<SnapshotEntry> all = store_.list();
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0].key, "bbbb");
  EXPECT_EQ(all[0].memory_mib, 512u);
  EXPECT_EQ(all[1].key, "aaaa");
  EXPECT_EQ(all[1].vcpus, 2);
  EXPECT_EQ(all[1].seed_size, 4194304u);
  EXPECT_EQ(all[1].bytes, std::string("saved memory of aaaa").size() + std::string("disk of aaaa").size());
  EXPECT_EQ(all[1].state(), dir_ / "snapshots/aaaa/state.save");
  EXPECT_FALSE(store_.find("cccc"));
  ASSERT_TRUE(store_.remove("aaaa"));
  EXPECT_EQ(store_.list().size(), 1u);
}

TEST_F(SnapshotStoreTest, AFileChangedOrTruncatedSinceItWasMadeIsRefused) {
  EXPECT_TRUE(verify_snapshot(entry("aaaa"), hashes_));
  testing::write_text(dir_ / "snapshots/aaaa/state.save", "saved memory of aaab");
  auto changed = verify_snapshot(entry("aaaa"), hashes_);
  ASSERT_FALSE(changed);
  EXPECT_THAT(changed.error().message, HasSubstr("snapshot aaaa: state.save changed since it was made"));
  fs::resize_file(dir_ / "snapshots/bbbb/disk0.qcow2", 3);
  auto truncated = verify_snapshot(entry("bbbb"), hashes_);
  ASSERT_FALSE(truncated);
  EXPECT_THAT(truncated.error().message, HasSubstr("disk0.qcow2 changed since it was made"));
}

TEST_F(SnapshotStoreTest, IsStaleOnceItsImageChangesOrGoesOrQemuIsReplaced) {
  EXPECT_EQ(snapshot_staleness(entry("aaaa"), hashes_), "");
  testing::write_text(dir_ / "image/disk.raw", "the image's disk, baked again\n");
  EXPECT_EQ(snapshot_staleness(entry("aaaa"), hashes_), (dir_ / "image/disk.raw").string() + " changed");
  fs::remove(dir_ / "image/disk.raw");
  EXPECT_EQ(snapshot_staleness(entry("aaaa"), hashes_), (dir_ / "image/disk.raw").string() + " is gone");

  testing::write_text(dir_ / "image/disk.raw", "the image's disk, baked once more\n");
  make("cccc", 1024, 300);
  EXPECT_EQ(snapshot_staleness(entry("cccc"), hashes_), "");
  // An upgrade replaces the binary: another inode, size or time.
  fs::remove(dir_ / "qemu");
  testing::write_text(dir_ / "qemu", "#!/bin/sh\n# a newer qemu\n");
  fs::permissions(dir_ / "qemu", fs::perms(0755));
  EXPECT_EQ(snapshot_staleness(entry("cccc"), hashes_), (dir_ / "qemu").string() + " was replaced since");
}

TEST_F(SnapshotStoreTest, ARecordWithoutWhatItWasMadeFromIsStale) {
  testing::write_text(dir_ / "snapshots/aaaa/snapshot.json", R"({"memory_mib": 1024})");
  EXPECT_THAT(snapshot_staleness(entry("aaaa"), hashes_), HasSubstr("made by an earlier kiln"));
  testing::write_text(dir_ / "snapshots/bbbb/snapshot.json", "not json");
  EXPECT_FALSE(store_.find("bbbb"));
}

}  // namespace
}  // namespace kiln
