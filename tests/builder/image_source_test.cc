// bootstrap.from naming a kiln image directory: where its root filesystem
// is (root.img, or disk.raw's root partition), which images are refused
// (encrypted, on LVM, without a root), and what keys the import stage: the
// root's bytes and the architecture, not the image's other files. The
// export itself is tests/formats/ext4_image_test.cc's; a bake from an
// imported image, booted, is tests/integration/import_test.cc's.
#include "builder/image_source.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "formats/image/image_manifest.h"
#include "tests/builder/planned_recipe.h"
#include "tests/test_support.h"

namespace kiln {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

class ImageSource : public ::testing::Test {
 protected:
  // An image directory with `files` (each holding its name) and a manifest
  // listing them; `edit` changes the manifest first.
  fs::path image(const std::string& name, const std::vector<std::string>& files,
                 const std::function<void(ImageManifest&)>& edit = {}) {
    ImageManifest m;
    m.name = name;
    m.version = "1";
    m.layout = "gpt";
    m.architecture = "amd64";
    fs::path dir = dir_ / name;
    for (const std::string& file : files) {
      testing::write_text(dir / file, file);
      m.artifacts.push_back({file, file.size(), ""});
    }
    if (edit) edit(m);
    testing::write_text(dir / "manifest.json", write_image_manifest(m));
    return dir;
  }
  static void root_partition(ImageManifest& m) {
    m.partitions = {{1, "esp", "", "", 1 << 20, 128 << 20}, {2, "root", "", "", 129 << 20, 1 << 30}};
  }
  Result<Plan> plan(const fs::path& from, const std::string& arch = "amd64", fs::path file_hashes = {}) {
    std::string text = fmt::format("[image]\nname = \"x\"\narch = \"{}\"\n[bootstrap]\nfrom = \"{}\"\n", arch,
                                   from.string());
    recipe_ = *parse_recipe(text, "r.toml", dir_.path(), {});
    return make_plan(recipe_, {1700000000, 1800000000, "http://mirror.example/debian", std::move(file_hashes)});
  }
  testing::ScratchDir dir_;
  Recipe recipe_;
};

TEST_F(ImageSource, AnImageDirectoryIsOneWithAManifest) {
  EXPECT_TRUE(is_image_directory(image("plain", {"root.img"})));
  EXPECT_FALSE(is_image_directory(dir_ / "plain/root.img"));
  EXPECT_FALSE(is_image_directory(dir_.path()));
}

TEST_F(ImageSource, TheRootIsRootImgOrDiskRawsRootPartition) {
  auto plain = image_root_filesystem(image("plain", {"root.img"}));
  ASSERT_TRUE(plain) << plain.error().to_string();
  EXPECT_EQ(plain->file, dir_ / "plain/root.img");
  EXPECT_EQ(plain->offset, 0u);
  auto disk = image_root_filesystem(image("disk", {"disk.raw"}, root_partition));
  ASSERT_TRUE(disk) << disk.error().to_string();
  EXPECT_EQ(disk->file, dir_ / "disk/disk.raw");
  EXPECT_EQ(disk->offset, 129u << 20);
  EXPECT_EQ(disk->architecture, "amd64");
}

TEST_F(ImageSource, EncryptedLvmAndRootlessImagesAreRefusedByName) {
  auto encrypted = image_root_filesystem(image("vault", {"disk.raw"}, [](ImageManifest& m) {
    root_partition(m);
    m.encryption = ManifestEncryption{"luks2"};
  }));
  ASSERT_FALSE(encrypted);
  EXPECT_THAT(encrypted.error().message, HasSubstr("vault: its root is encrypted (luks2)"));
  auto lvm = image_root_filesystem(image("lvm", {"disk.raw"}, [](ImageManifest& m) { m.layout = "lvm"; }));
  ASSERT_FALSE(lvm);
  EXPECT_THAT(lvm.error().message, HasSubstr("its root is on LVM"));
  auto rootless = image_root_filesystem(image("rootless", {"disk.raw"}));
  ASSERT_FALSE(rootless);
  EXPECT_THAT(rootless.error().message, HasSubstr("neither a root.img nor a root partition"));
}

TEST_F(ImageSource, TheImportIsKeyedByTheRootsBytesAlone) {
  fs::path dir = image("disk", {"disk.raw", "vmlinuz"}, root_partition);
  auto first = plan(dir);
  ASSERT_TRUE(first) << first.error().to_string();
  EXPECT_EQ(first->source.description, "import image " + dir.string());
  testing::write_text(dir / "vmlinuz", "another kernel");
  auto same = plan(dir);
  ASSERT_TRUE(same);
  EXPECT_EQ(same->source.key, first->source.key) << "a file beside the root";
  testing::write_text(dir / "disk.raw", "another root");
  auto changed = plan(dir);
  ASSERT_TRUE(changed);
  EXPECT_NE(changed->source.key, first->source.key);
}

// A bake's cache remembers the root's hash (base/file_hash_cache.h): the
// key is the same with it as without.
TEST_F(ImageSource, ARememberedHashGivesTheSameKey) {
  fs::path dir = image("disk", {"disk.raw"}, root_partition);
  auto direct = plan(dir);
  auto remembered = plan(dir, "amd64", dir_ / "hashes");
  ASSERT_TRUE(direct && remembered);
  EXPECT_EQ(remembered->source.key, direct->source.key);
}

TEST_F(ImageSource, AnImageOfAnotherArchitectureIsRefusedAtTheSetting) {
  fs::path dir = image("disk", {"disk.raw"}, root_partition);
  auto planned = plan(dir, "arm64");
  ASSERT_FALSE(planned);
  EXPECT_EQ(planned.error().where.line, 5) << "the line of bootstrap.from";
  EXPECT_THAT(planned.error().message, HasSubstr("is an amd64 image, and image.arch is arm64"));
}

}  // namespace
}  // namespace kiln
