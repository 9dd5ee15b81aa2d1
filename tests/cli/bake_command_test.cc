// `kiln bake` end to end on a small imported rootfs (no network): what lands
// in the output directory, what is cached, and what is left behind when
// things go wrong.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "base/stale_temps.h"
#include "tests/builder/fake_rootfs.h"
#include "tests/test_support.h"

namespace kiln {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using testing::ProcessResult;
using testing::read_text;
using testing::run_kiln;
using testing::run_program;
using testing::ScratchDir;
using testing::write_text;

class BakeCommandTest : public ::testing::Test {
 protected:
  void SetUp() override { testing::write_fake_rootfs(dir_ / "rootfs.tar"); }

  std::string recipe(const std::string& extra = "", const std::string& storage = "size = \"256M\"\n") {
    std::string path = (dir_ / "fake.toml").string();
    write_text(path, "[image]\nname = \"fake\"\ndescription = \"test image\"\n"
                     "[bootstrap]\nfrom = \"rootfs.tar\"\n"
                     "[storage]\n" + storage +
                     "[customize]\nhostname = \"baked\"\n" + extra);
    return path;
  }

  ProcessResult bake(const std::string& recipe_path, const std::string& out, std::vector<std::string> more = {},
                     std::vector<std::string> env = {"SOURCE_DATE_EPOCH=1700000000"}) {
    std::vector<std::string> args = {"bake", recipe_path, "-o", out, "--cache", (dir_ / "cache").string()};
    args.insert(args.end(), more.begin(), more.end());
    return run_kiln(args, env);
  }

  std::string sha256(const std::filesystem::path& file) {
    return run_program({"sha256sum", file.string()}).out.substr(0, 64);
  }

  std::string debugfs_cat(const std::filesystem::path& image, const std::string& path) {
    return run_program({"debugfs", "-R", "cat " + path, image.string()}).out;
  }

  ScratchDir dir_;
};

TEST_F(BakeCommandTest, WritesTheDefaultOutputsAndAManifestThatMatchesThem) {
  auto out = dir_ / "out";
  auto result = bake(recipe(), out.string());
  ASSERT_EQ(result.exit_code, 0) << result.err;
  EXPECT_THAT(testing::list_tree(out), ElementsAre("disk.raw", "fake.libvirt.xml", "fake.xl.cfg", "initrd.img",
                                                   "manifest.json", "root.img", "vmlinuz"));
  auto manifest = nlohmann::json::parse(read_text(out / "manifest.json"));
  EXPECT_EQ(manifest["image"]["name"], "fake");
  EXPECT_EQ(manifest["kiln_version"], KILN_VERSION);
  EXPECT_EQ(manifest["recipe"]["sha256"].get<std::string>().size(), 64u);
  EXPECT_EQ(manifest["image"]["kernel"], testing::kFakeKernelVersion);
  ASSERT_EQ(manifest["packages"].size(), 2u);  // the deinstalled one is not listed
  EXPECT_EQ(manifest["packages"][0]["name"], "base-files");
  EXPECT_EQ(manifest["packages"][0]["version"], "12.4+deb12u5");
  ASSERT_EQ(manifest["artifacts"].size(), 6u);
  for (const auto& artifact : manifest["artifacts"]) {
    auto file = out / artifact["file"].get<std::string>();
    if (file.filename() == "disk.raw")
      EXPECT_FALSE(artifact.contains("sha256")) << "the whole disk's sha256 is left to publish by default";
    else
      EXPECT_EQ(artifact["sha256"], sha256(file)) << file;
    EXPECT_EQ(artifact["size"], std::filesystem::file_size(file)) << file;
  }
  EXPECT_THAT(result.out, HasSubstr("sha256 at publish"));
  EXPECT_EQ(read_text(out / "vmlinuz"), std::string(4096, 'K'));
}

TEST_F(BakeCommandTest, TakesTheWholeDiskSha256AtBakeWhenTheRecipeAsks) {
  auto out = dir_ / "out";
  auto result = bake(recipe(), out.string(), {"--set", "output.disk_sha256=bake"});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  auto manifest = nlohmann::json::parse(read_text(out / "manifest.json"));
  ASSERT_EQ(manifest["artifacts"][0]["file"], "disk.raw");
  EXPECT_EQ(manifest["artifacts"][0]["sha256"], sha256(out / "disk.raw"));
}

TEST_F(BakeCommandTest, CachePruneTakesDurationsAsEveryOtherFlagDoes) {
  auto cache = (dir_ / "cache").string();
  auto bad = run_kiln({"cache", "prune", "--cache", cache, "--unused-for", "7 days"});
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_THAT(bad.err, HasSubstr("--unused-for \"7 days\": expected a number with a unit s, m, h or d"));
  auto good = run_kiln({"cache", "prune", "--cache", cache, "--unused-for", "12h", "--json"});
  EXPECT_EQ(good.exit_code, 0) << good.err;
}

TEST_F(BakeCommandTest, AnUnknownDiskSha256ChoiceIsRefusedWithItsPlace) {
  auto result = bake(recipe(), (dir_ / "out").string(), {"--set", "output.disk_sha256=never"});
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_THAT(result.err, HasSubstr("disk_sha256"));
  EXPECT_FALSE(std::filesystem::exists(dir_ / "out"));
}

// Without "partitions" there is no root.img: the Xen domain takes the whole
// disk as xvda and its root partition as root, and `kiln boot` takes the
// same partition.
TEST_F(BakeCommandTest, WithoutPartitionImagesTheXenDomainBootsTheWholeDisk) {
  auto out = dir_ / "out";
  auto result = bake(recipe("[output]\nformats = [\"disk\", \"kernel\", \"xen\"]\n"), out.string());
  ASSERT_EQ(result.exit_code, 0) << result.err;
  EXPECT_THAT(testing::list_tree(out),
              ElementsAre("disk.raw", "fake.xl.cfg", "initrd.img", "manifest.json", "vmlinuz"));
  std::string xl = read_text(out / "fake.xl.cfg");
  EXPECT_THAT(xl, HasSubstr("'file:" + (out / "disk.raw").string() + ",xvda,w'"));
  EXPECT_THAT(xl, HasSubstr("root = \"/dev/xvda2 ro\""));
  auto manifest = nlohmann::json::parse(read_text(out / "manifest.json"));
  EXPECT_EQ(manifest["image"]["partitions"][1]["name"], "root");
  EXPECT_EQ(manifest["image"]["partitions"][1]["number"], 2);
  auto fsck = run_program({"e2fsck", "-fn",
                           (out / "disk.raw").string() + "?offset=" +
                               std::to_string(manifest["image"]["partitions"][1]["offset"].get<uint64_t>())});
  EXPECT_EQ(fsck.exit_code, 0) << fsck.out << fsck.err;
}

TEST_F(BakeCommandTest, RootFilesystemIsCleanAndFstabNamesItsUuid) {
  auto out = dir_ / "out";
  ASSERT_EQ(bake(recipe(), out.string()).exit_code, 0);
  auto fsck = run_program({"e2fsck", "-fn", (out / "root.img").string()});
  EXPECT_EQ(fsck.exit_code, 0) << fsck.out;
  std::string uuid = run_program({"blkid", "-o", "value", "-s", "UUID", (out / "root.img").string()}).out;
  uuid = uuid.substr(0, uuid.find('\n'));
  ASSERT_EQ(uuid.size(), 36u);
  EXPECT_THAT(debugfs_cat(out / "root.img", "/etc/fstab"), HasSubstr("UUID=" + uuid + "\t/\text4\t"));
  EXPECT_EQ(debugfs_cat(out / "root.img", "/etc/hostname"), "baked\n");
  auto manifest = nlohmann::json::parse(read_text(out / "manifest.json"));
  EXPECT_EQ(manifest["image"]["root_filesystem"]["uuid"], uuid);
  EXPECT_THAT(manifest["image"]["kernel_cmdline"].get<std::string>(), HasSubstr("root=UUID=" + uuid + " ro"));
}

TEST_F(BakeCommandTest, DiskHasAnEspAndTheRootPartition) {
  auto out = dir_ / "out";
  ASSERT_EQ(bake(recipe(), out.string()).exit_code, 0);
  auto dump = run_program({"sfdisk", "--dump", (out / "disk.raw").string()});
  ASSERT_EQ(dump.exit_code, 0) << dump.err;
  EXPECT_THAT(dump.out, HasSubstr("label: gpt"));
  EXPECT_THAT(dump.out, HasSubstr("start=        2048, size=      262144, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B"));
  EXPECT_THAT(dump.out, HasSubstr("type=4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709"));
  // the root partition holds the same filesystem as root.img
  auto fsck = run_program({"sh", "-c", "dd if=" + (out / "disk.raw").string() + " bs=1M skip=129 2>/dev/null | cmp -n " +
                                           std::to_string(std::filesystem::file_size(out / "root.img")) + " - " +
                                           (out / "root.img").string()});
  EXPECT_EQ(fsck.exit_code, 0) << fsck.out << fsck.err;
  auto esp = run_program({"mdir", "-i", (out / "disk.raw").string() + "@@1M", "-b", "::loader/entries"},
                         {"MTOOLS_SKIP_CHECK=1"});
  EXPECT_THAT(esp.out, HasSubstr("fake.conf"));
  auto entry = run_program({"mtype", "-i", (out / "disk.raw").string() + "@@1M", "::loader/entries/fake.conf"},
                           {"MTOOLS_SKIP_CHECK=1"});
  EXPECT_THAT(entry.out, HasSubstr("options root=UUID="));
}

TEST_F(BakeCommandTest, SetOverridesTheRecipe) {
  auto out = dir_ / "out";
  ASSERT_EQ(bake(recipe(), out.string(), {"--set", "customize.hostname=web1"}).exit_code, 0);
  EXPECT_EQ(debugfs_cat(out / "root.img", "/etc/hostname"), "web1\n");
}

TEST_F(BakeCommandTest, SameSourceDateEpochGivesIdenticalImages) {
  std::string path = recipe();
  auto out = dir_ / "out";
  ASSERT_EQ(bake(path, out.string(), {"--no-cache"}).exit_code, 0);
  std::filesystem::rename(out, dir_ / "first");
  sleep(1);  // a clock leaking into the image would now differ
  ASSERT_EQ(bake(path, out.string(), {"--no-cache"}).exit_code, 0);
  // The configs name the output directory, so both bakes use the same one.
  for (const auto& file : testing::list_tree(out))
    EXPECT_EQ(sha256(dir_ / "first" / file), sha256(out / file)) << file;
}

TEST_F(BakeCommandTest, PlainLayoutWritesTheFilesystemAlone) {
  auto out = dir_ / "out";
  std::string path = recipe("", "size = \"64M\"\nlayout = \"plain\"\n");
  write_text(path, read_text(path) + "[output]\nformats = [\"partitions\"]\n");
  auto result = bake(path, out.string());
  ASSERT_EQ(result.exit_code, 0) << result.err;
  EXPECT_THAT(testing::list_tree(out), ElementsAre("manifest.json", "root.img"));
  EXPECT_EQ(std::filesystem::file_size(out / "root.img"), 64u << 20);
}

TEST_F(BakeCommandTest, InImageRunStepsAreCachedSeparatelyFromOfflineSteps) {
  if (::geteuid() != 0) GTEST_SKIP() << "in-image steps need root";
  auto out = dir_ / "out";
  std::string path = recipe("run = [\"echo ran in the image > /etc/ran\", \"mkdir -p /opt/app\"]\n");
  auto first = bake(path, out.string(), {"--json"});
  ASSERT_EQ(first.exit_code, 0) << first.err;
  EXPECT_THAT(first.out, HasSubstr(R"("name":"customize")"));
  EXPECT_EQ(debugfs_cat(out / "root.img", "/etc/ran"), "ran in the image\n");
  EXPECT_THAT(run_program({"debugfs", "-R", "stat /opt/app", (out / "root.img").string()}).out,
              HasSubstr("Type: directory"));
  auto second = bake(path, out.string(), {"--json", "--set", "customize.hostname=other"});
  ASSERT_EQ(second.exit_code, 0) << second.err;
  auto result = nlohmann::json::parse(second.out.substr(second.out.rfind("{\"artifacts\"")));
  bool customize_cached = false;
  for (const auto& stage : result["stages"])
    if (stage["name"] == "customize") customize_cached = stage["cached"];
  EXPECT_TRUE(customize_cached) << second.out;
  EXPECT_EQ(debugfs_cat(out / "root.img", "/etc/hostname"), "other\n");
  EXPECT_EQ(debugfs_cat(out / "root.img", "/etc/ran"), "ran in the image\n");
}

TEST_F(BakeCommandTest, FailingRunStepShowsTheCommandAndItsOutput) {
  if (::geteuid() != 0) GTEST_SKIP() << "in-image steps need root";
  auto result = bake(recipe("run = [\"echo 'E: disk on fire' >&2; exit 7\"]\n"), (dir_ / "out").string());
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_THAT(result.err, HasSubstr("fake.toml:10:8: customize.run: `echo 'E: disk on fire' >&2; exit 7`: sh failed with exit code 7"));
  EXPECT_THAT(result.err, HasSubstr("E: disk on fire"));
  EXPECT_FALSE(std::filesystem::exists(dir_ / "out"));
}

TEST_F(BakeCommandTest, ContentThatDoesNotFitNamesTheSizeThatWould) {
  testing::ArchiveBuilder big;
  big.file("big.bin", std::string(48 << 20, 'x'));
  big.file("etc/passwd", "root:x:0:0::/root:/bin/sh\n");
  big.write_to(dir_ / "rootfs.tar");
  std::string path = recipe("", "size = \"32M\"\nlayout = \"plain\"\n");
  write_text(path, read_text(path) + "[output]\nformats = [\"partitions\"]\n");
  auto result = bake(path, (dir_ / "out").string());
  EXPECT_EQ(result.exit_code, 4);
  EXPECT_THAT(result.err, HasSubstr("fake.toml:7:8: the image does not fit"));
  auto suggestion = result.err.substr(result.err.rfind("set storage.size = \"") + 20);
  suggestion = suggestion.substr(0, suggestion.find('"'));
  ASSERT_FALSE(suggestion.empty()) << result.err;
  auto retry = bake(path, (dir_ / "out").string(), {"--set", "storage.size=" + suggestion});
  EXPECT_EQ(retry.exit_code, 0) << retry.err;
}

TEST_F(BakeCommandTest, FailureKeepsThePreviousOutputAndLeavesNothingBehind) {
  auto out = dir_ / "out";
  ASSERT_EQ(bake(recipe(), out.string()).exit_code, 0);
  std::string before = sha256(out / "disk.raw");
  auto bad = bake(recipe("timezone = \"Mars/Olympus\"\n"), out.string());
  EXPECT_EQ(bad.exit_code, 2) << bad.err;
  EXPECT_EQ(sha256(out / "disk.raw"), before);
  for (const auto& entry : std::filesystem::directory_iterator(dir_.path()))
    EXPECT_FALSE(entry.path().filename().string().starts_with(".")) << entry.path();
  EXPECT_TRUE(testing::list_tree(dir_ / "cache/tmp").empty());
}

TEST_F(BakeCommandTest, AFullDiskIsANoSpaceErrorThatLeavesNothingBehind) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root for a small private tmpfs";
  testing::ArchiveBuilder big;
  big.file("data.bin", std::string(40 << 20, 'd'));
  big.write_to(dir_ / "rootfs.tar");
  std::string path = recipe("", "size = \"128M\"\nlayout = \"plain\"\n");
  write_text(path, read_text(path) + "[output]\nformats = [\"partitions\"]\n");
  // A 24 MiB filesystem, mounted in a private namespace only this shell sees.
  std::string script = "mkdir -p " + (dir_ / "small").string() + " && mount -t tmpfs -o size=24m tmpfs " +
                       (dir_ / "small").string() + " && " + testing::kiln_binary() + " bake " + path + " -o " +
                       (dir_ / "small/out").string() + " --no-cache; code=$?; ls -A " + (dir_ / "small").string() +
                       "; exit $code";
  auto result = run_program({"unshare", "-m", "sh", "-c", script}, {"SOURCE_DATE_EPOCH=1700000000"});
  EXPECT_EQ(result.exit_code, 4) << result.err;
  EXPECT_THAT(result.err, HasSubstr("No space left on device"));
  // The host's disk, not storage.size: no bigger size is suggested.
  EXPECT_THAT(result.err, HasSubstr("the host's disk filled up while writing the image"));
  EXPECT_THAT(result.err, ::testing::Not(HasSubstr("set storage.size")));
  EXPECT_EQ(result.out, "") << "left behind: " << result.out;
}

TEST_F(BakeCommandTest, RefusesToReplaceADirectoryThatIsNotAKilnOutput) {
  write_text(dir_ / "precious/notes.txt", "mine");
  auto result = bake(recipe(), (dir_ / "precious").string());
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_THAT(result.err, HasSubstr("is not a kiln output directory"));
  EXPECT_EQ(read_text(dir_ / "precious/notes.txt"), "mine");
}

TEST_F(BakeCommandTest, MissingToolNamesTheDebianPackage) {
  auto result = bake(recipe(), (dir_ / "out").string(), {},
                     {"SOURCE_DATE_EPOCH=1700000000", "PATH=" + (dir_ / "empty-path").string()});
  EXPECT_EQ(result.exit_code, 3) << result.err;
  EXPECT_THAT(result.err, HasSubstr("install the Debian package 'mtools'"));
  EXPECT_FALSE(std::filesystem::exists(dir_ / "out"));
}

TEST_F(BakeCommandTest, InterruptLeavesNoHalfWrittenOutput) {
  testing::ArchiveBuilder big;
  for (int i = 0; i < 40; ++i) big.file("data/file" + std::to_string(i), std::string(8 << 20, 'a' + i % 26));
  big.write_to(dir_ / "rootfs.tar");
  std::string path = recipe("", "size = \"1G\"\n");
  pid_t pid = fork();
  if (pid == 0) {
    std::string cache = (dir_ / "cache").string(), out = (dir_ / "out").string();
    execl(testing::kiln_binary().c_str(), "kiln", "bake", path.c_str(), "-o", out.c_str(), "--cache", cache.c_str(),
          nullptr);
    _exit(127);
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  kill(pid, SIGINT);
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 130);
  EXPECT_FALSE(std::filesystem::exists(dir_ / "out"));
  for (const auto& entry : std::filesystem::directory_iterator(dir_.path()))
    EXPECT_FALSE(entry.path().filename().string().starts_with(".")) << entry.path();
}

// SIGKILL runs no clean-up: the next bake of the same output removes what
// the killed one left (its work and staged directories, its cache scratch),
// and leaves a running bake's alone.
TEST_F(BakeCommandTest, WhatAKilledBakeLeftIsRemovedByTheNextBake) {
  testing::ArchiveBuilder big;
  for (int i = 0; i < 40; ++i) big.file("data/file" + std::to_string(i), std::string(8 << 20, 'a' + i % 26));
  big.write_to(dir_ / "rootfs.tar");
  std::string path = recipe("", "size = \"1G\"\n");
  auto leftovers = [&] {
    std::vector<std::string> out;
    for (const auto& entry : std::filesystem::directory_iterator(dir_.path()))
      if (entry.path().filename().string().starts_with(".")) out.push_back(entry.path().filename().string());
    for (const std::string& name : testing::list_tree(dir_ / "cache/tmp")) out.push_back("cache/tmp/" + name);
    return out;
  };
  pid_t pid = fork();
  if (pid == 0) {
    std::string cache = (dir_ / "cache").string(), out = (dir_ / "out").string();
    execl(testing::kiln_binary().c_str(), "kiln", "bake", path.c_str(), "-o", out.c_str(), "--cache", cache.c_str(),
          nullptr);
    _exit(127);
  }
  bool started = testing::wait_for([&] { return !leftovers().empty(); }, std::chrono::seconds(60),
                                   [] { return std::string("no work directory yet"); });
  kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
  ASSERT_TRUE(started);
  ASSERT_FALSE(leftovers().empty());
  std::string live = ".out.kiln-" + process_tag() + "-Ab12Cd";  // as a bake running now would have it
  std::filesystem::create_directories(dir_ / live);

  testing::write_fake_rootfs(dir_ / "rootfs.tar");
  auto again = bake(recipe(), (dir_ / "out").string());
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_THAT(leftovers(), ElementsAre(live));
}

TEST_F(BakeCommandTest, BadRecipeExitsWithTwoAndNamesTheSpot) {
  write_text(dir_ / "bad.toml", "[image]\nname = \"x\"\n[bootstrap]\nsuite = \"bookworm\"\n[storage]\nsize = \"2Q\"\n");
  auto result = run_kiln({"bake", (dir_ / "bad.toml").string(), "-o", (dir_ / "out").string()});
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_THAT(result.err, ::testing::StartsWith("kiln: error: " + (dir_ / "bad.toml").string() + ":6:8: storage.size: bad size \"2Q\""));
  EXPECT_FALSE(std::filesystem::exists(dir_ / "out"));
}

}  // namespace
}  // namespace kiln
