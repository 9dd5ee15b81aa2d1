// Publish and pull with the real baked image (the default recipe), and the
// existing clients that read what kiln publishes: virt-builder lists kiln's
// image from the clearsigned index and builds a disk from it, and kiln pull
// brings the image back byte for byte.
//
// Publishing 2 GiB takes minutes, so the first test to need the site
// publishes it once into the integration directory, keyed by the bake's
// manifest; the others (in this process or another) reuse it.
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "base/hash.h"
#include "tests/crypto/gpg_test_home.h"
#include "tests/integration/root_filesystem.h"
#include "tests/test_support.h"

namespace kiln {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using testing::read_text;
using testing::run_kiln;
using testing::run_program;
using testing::ScratchDir;

fs::path baked_image() { return fs::path(KILN_INTEGRATION_DIR) / "default"; }

// The published site: SITE/{*.xvm,vmcast.rss,index.asc,...}, with the
// publisher's public key and fingerprint beside it.
struct Published {
  fs::path site;
  fs::path keyring;
  std::string fingerprint;
};

const Published& published() {
  static const Published result = [] {
    // The manifest leaves disk.raw's digest to publish, so a re-bake that
    // changed only the disk (a new exec agent, say) is told by its mtime.
    struct stat disk {};
    ::stat((baked_image() / "disk.raw").c_str(), &disk);
    std::string key = sha256_hex(read_text(baked_image() / "manifest.json") + std::to_string(disk.st_mtim.tv_sec) +
                                 "." + std::to_string(disk.st_mtim.tv_nsec))
                          .substr(0, 16);
    fs::path dir = fs::path(KILN_INTEGRATION_DIR) / ("feeds-" + key);
    Published out{dir / "site", dir / "trusted.gpg", ""};
    // ctest may run these tests in parallel processes: one publishes, the
    // others wait for it.
    int lock = ::open((dir.string() + ".lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (lock < 0 || ::flock(lock, LOCK_EX) != 0) throw std::runtime_error("cannot lock " + dir.string() + ".lock");
    if (!fs::exists(dir / "fingerprint")) {
      fs::path building = dir.string() + ".building";
      fs::remove_all(building);
      fs::create_directories(building);
      testing::GpgTestHome publisher("Kiln Integration Publisher");
      publisher.export_public(building / "trusted.gpg");
      auto done = run_kiln({"publish", baked_image().string(), "--feed", (building / "site").string(), "--base-url",
                            "file://" + out.site.string() + "/", "--sign-key", publisher.fingerprint()},
                           publisher.env());
      if (done.exit_code != 0) throw std::runtime_error("kiln publish failed: " + done.err);
      testing::write_text(building / "fingerprint", publisher.fingerprint());
      fs::rename(building, dir);
    }
    ::close(lock);
    out.fingerprint = read_text(dir / "fingerprint");
    return out;
  }();
  return result;
}

class FeedsInteropTest : public ::testing::Test {
 protected:
  // A GnuPG home that holds only the publisher's public key, as a user who
  // imported it would have; and virt-builder kept to this source only, its
  // cache and config in scratch space.
  std::vector<std::string> virt_builder_env() {
    fs::path home = dir_ / "gnupg";
    fs::create_directories(home);
    fs::permissions(home, fs::perms::owner_all, fs::perm_options::replace);
    auto imported = run_program({"gpg", "--batch", "--import", published().keyring.string()},
                                {"GNUPGHOME=" + home.string()});
    EXPECT_EQ(imported.exit_code, 0) << imported.err;
    for (const char* sub : {"cache", "config", "no-system-sources", "tmp", "guestfs"}) fs::create_directories(dir_ / sub);
    return {"GNUPGHOME=" + home.string(),
            "XDG_CACHE_HOME=" + (dir_ / "cache").string(),
            "XDG_CONFIG_HOME=" + (dir_ / "config").string(),
            "VIRT_BUILDER_DIRS=" + (dir_ / "no-system-sources").string(),
            "TMPDIR=" + (dir_ / "tmp").string(),
            "LIBGUESTFS_CACHEDIR=" + (dir_ / "guestfs").string(),
            "LIBGUESTFS_BACKEND_SETTINGS=force_tcg"};
  }
  std::string source() const { return "file://" + (published().site / "index.asc").string(); }

  ~FeedsInteropTest() override {
    run_program({"gpgconf", "--homedir", (dir_ / "gnupg").string(), "--kill", "all"});
  }

  ScratchDir dir_;
};

TEST_F(FeedsInteropTest, VirtBuilderListsKilnsImageFromTheClearsignedIndex) {
  auto env = virt_builder_env();
  auto listed = run_program({"virt-builder", "--list", "--source", source(), "--fingerprint", published().fingerprint},
                            env);
  ASSERT_EQ(listed.exit_code, 0) << listed.err;
  EXPECT_THAT(listed.out, HasSubstr("debian-12-minimal"));
  EXPECT_THAT(listed.out, HasSubstr("x86_64"));
  auto wrong = run_program({"virt-builder", "--list", "--source", source(), "--fingerprint",
                            "0000000000000000000000000000000000000000"},
                           env);
  EXPECT_NE(wrong.exit_code, 0) << "virt-builder must check the index's signature";
}

TEST_F(FeedsInteropTest, VirtBuilderBuildsADiskFromKilnsImage) {
  auto env = virt_builder_env();
  std::vector<std::string> argv = {"virt-builder", "debian-12-minimal", "--source", source(), "--fingerprint",
                                   published().fingerprint, "--no-network", "-o", (dir_ / "x.img").string()};
  // libguestfs boots an appliance on the host's kernel. A host without one
  // (a container) lends it the kernel kiln baked, with its modules, and
  // gives supermin an empty /lib/modules in a private mount namespace.
  bool host_kernel = !run_program({"sh", "-c", "ls /boot/vmlinuz-* /lib/modules/*/vmlinuz"}).out.empty();
  if (!host_kernel) {
    auto manifest = nlohmann::json::parse(read_text(baked_image() / "manifest.json"));
    std::string version = manifest["image"]["kernel"];
    auto dumped = run_program({"debugfs", "-R", "rdump /usr/lib/modules/" + version + " " + dir_.path().string(),
                               testing::root_filesystem(baked_image())});
    ASSERT_TRUE(fs::exists(dir_ / version)) << dumped.err;
    env.push_back("SUPERMIN_KERNEL=" + (baked_image() / "vmlinuz").string());
    env.push_back("SUPERMIN_MODULES=" + (dir_ / version).string());
    fs::create_directories(dir_ / "lib/upper/modules");
    fs::create_directories(dir_ / "lib/work");
    std::string lib = fs::canonical("/lib").string();
    argv.insert(argv.begin(), {"unshare", "--mount", "--propagation", "private", "sh", "-c",
                               "mount -t overlay overlay -o \"lowerdir=$1,upperdir=$2/upper,workdir=$2/work\" \"$1\" && "
                               "shift 2 && exec \"$@\"",
                               "sh", lib, (dir_ / "lib").string()});
  }
  auto built = run_program(argv, env);
  ASSERT_EQ(built.exit_code, 0) << built.out << built.err;
  EXPECT_GE(fs::file_size(dir_ / "x.img"), fs::file_size(baked_image() / "disk.raw"));
  auto table = run_program({"sfdisk", "--json", (dir_ / "x.img").string()});
  ASSERT_EQ(table.exit_code, 0) << table.err;
  EXPECT_EQ(nlohmann::json::parse(table.out)["partitiontable"]["partitions"].size(), 2u);
}

TEST_F(FeedsInteropTest, PullBringsTheBakedImageBackByteForByte) {
  auto pulled = run_kiln({"pull", "file://" + (published().site / "vmcast.rss").string(), "--keyring",
                          published().keyring.string(), "-o", (dir_ / "out").string(), "--download-dir",
                          (dir_ / "dl").string()});
  ASSERT_EQ(pulled.exit_code, 0) << pulled.err;
  auto original = nlohmann::json::parse(read_text(baked_image() / "manifest.json"));
  auto back = nlohmann::json::parse(read_text(dir_ / "out" / "manifest.json"));
  EXPECT_EQ(back["image"], original["image"]);
  EXPECT_EQ(back["packages"], original["packages"]);
  // Byte for byte what was baked; disk.raw's sha256, which the bake left to
  // publish, is now in the pulled manifest.
  for (const auto& artifact : back["artifacts"]) {
    std::string file = artifact["file"];
    if (file.ends_with(".xl.cfg") || file.ends_with(".libvirt.xml")) continue;  // they now name DIR
    std::string digest = *file_digest_hex(dir_ / "out" / file);
    EXPECT_EQ(digest, *file_digest_hex(baked_image() / file)) << file;
    EXPECT_EQ(digest, artifact["sha256"]) << file;
  }
  EXPECT_EQ(back["pulled"]["signed_by"], published().fingerprint);
}

}  // namespace
}  // namespace kiln
