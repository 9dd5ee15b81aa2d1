// manifest.json as one type: what the bake writes reads back equal, older
// manifests still read, a newer format is refused by name, and damage is
// named.
#include "formats/image/image_manifest.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace kiln {
namespace {

using ::testing::HasSubstr;

ImageManifest full_manifest() {
  ImageManifest m;
  m.kiln_version = "0.1.0";
  m.recipe_file = "web.toml";
  m.recipe_sha256 = std::string(64, 'a');
  m.name = "web";
  m.version = "1.2";
  m.description = "a web server";
  m.layout = "lvm";
  m.architecture = "arm64";
  m.imported_from = "/srv/vendor.qcow2";
  m.imported_format = "qcow2";
  m.imported_sha256 = std::string(64, 'c');
  m.imported_config = "debian-5.0/debian-5.0.xen.cfg";
  m.imported_disks = {{"debian-5.0/debian-5.0.img", "sda1", "root", "root.img"},
                      {"debian-5.0/debian-5.0.swap", "sda2", "swap", "swap.img"}};
  m.size = 2u << 30;
  m.root_filesystem_type = "ext4";
  m.root_filesystem_uuid = "11111111-2222-5333-8444-555555555555";
  m.root_filesystem_size = 1u << 30;
  m.root_filesystem_label = "root";
  m.partitions = {{1, "esp", "C12A7328-F81F-11D2-BA4B-00A0C93EC93B", "u1", 1 << 20, 128 << 20},
                  {2, "root", "E6D6D379-F507-44C2-A23C-238F2A3DF928", "u2", 129 << 20, 1918u << 20}};
  m.kernel = "6.1.0-13-amd64";
  m.kernel_cmdline = "root=/dev/mapper/vg0-root ro quiet";
  m.memory_mib = 1024;
  m.vcpus = 2;
  m.esp_volume_id = "ABCD-1234";
  m.root_device = "/dev/mapper/vg0-root";
  m.build_timestamp = 1700000000;
  m.reproducible = true;
  m.bootstrap_key = std::string(64, 'b');
  m.customize_key = std::string(64, 'c');
  m.packages = {{"base-files", "12.4+deb12u5", "amd64"}, {"tzdata", "2024a-0+deb12u1", "all"}};
  m.artifacts = {{"disk.raw", 2u << 30, std::string(64, 'd')}, {"root.img", 1u << 30, std::string(64, 'e')}};
  m.volumes = {{"root", "ext4", "/", "root", "v1", 0, 1u << 30}, {"swap", "swap", "", "", "v2", 1u << 30, 256 << 20}};
  m.partition_images = {{"root.img", "root"}};
  m.lvm = ManifestLvm{"vg0", "vgu", "pvu", 4 << 20, 479, 1 << 20};
  m.encryption = ManifestEncryption{"luks2", "aes-xts-plain64", 512, 4096, 16 << 20, 1, 12345, "kiln", "cryptroot", "lu"};
  return m;
}

std::string error_of(std::string_view text) {
  auto read = read_image_manifest(text, "m.json");
  if (read) return "(read fine)";
  EXPECT_EQ(read.error().kind, ErrorKind::kBadInput);
  return read.error().message;
}

TEST(ImageManifest, WhatIsWrittenReadsBackEqual) {
  ImageManifest written = full_manifest();
  auto read = read_image_manifest(write_image_manifest(written), "m.json");
  ASSERT_TRUE(read) << read.error().to_string();
  EXPECT_EQ(*read, written);
  EXPECT_EQ(read->root_partition(), 2);
  EXPECT_EQ(read->find("root.img")->size, 1u << 30);
  ImageManifest plain;
  plain.name = "tiny";
  plain.version = "1";
  plain.architecture = "amd64";
  auto read_plain = read_image_manifest(write_image_manifest(plain), "m.json");
  ASSERT_TRUE(read_plain) << read_plain.error().to_string();
  EXPECT_EQ(*read_plain, plain);
  EXPECT_FALSE(read_plain->root_partition());
}

TEST(ImageManifest, AManifestFromBeforeTheFormatNumberReads) {
  // As kiln wrote them before: no "format", keys in alphabetical order.
  auto read = read_image_manifest(R"({"artifacts": [{"file": "root.img", "sha256": ")" + std::string(64, 'f') +
                                      R"(", "size": 4096}],
      "build": {"reproducible": false, "timestamp": 1}, "image": {"name": "old", "version": "1.0",
      "memory_mib": 512}, "kiln_version": "0.1.0", "packages": []})",
                                  "old.json");
  ASSERT_TRUE(read) << read.error().to_string();
  EXPECT_EQ(read->format, 1);
  EXPECT_EQ(read->name, "old");
  EXPECT_EQ(read->memory_mib, 512u);
  EXPECT_EQ(read->vcpus, 0) << "not recorded";
  EXPECT_EQ(read->architecture, "amd64") << "the only one kiln baked then";
}

TEST(ImageManifest, AManifestWithoutItsArchitectureTakesThatOfItsPackages) {
  auto read = read_image_manifest(R"({"artifacts": [], "build": {}, "image": {"name": "old", "version": "1.0"},
      "packages": [{"name": "base-files", "version": "12", "architecture": "all"},
                   {"name": "bash", "version": "5", "architecture": "i386"}]})",
                                  "old.json");
  ASSERT_TRUE(read) << read.error().to_string();
  EXPECT_EQ(read->architecture, "i386");
}

TEST(ImageManifest, ANewerFormatIsRefusedByName) {
  EXPECT_EQ(error_of(R"({"format": 2, "image": {"name": "x", "version": "1"}, "artifacts": []})"),
            "m.json: a manifest of format 2, newer than this kiln reads (format 1 and older); use a newer kiln");
}

TEST(ImageManifest, DamageIsNamed) {
  EXPECT_EQ(error_of("[]"), "m.json: not a JSON object");
  EXPECT_THAT(error_of(R"({"artifacts": []})"), HasSubstr("no \"image\" object"));
  EXPECT_THAT(error_of(R"({"image": {"name": "x"}, "artifacts": []})"), HasSubstr("image.version is missing"));
  EXPECT_THAT(error_of(R"({"image": {"name": "../x", "version": "1"}, "artifacts": []})"),
              HasSubstr("image.name \"../x\" is not a plain name"));
  EXPECT_THAT(error_of(R"({"image": {"name": "x", "version": "1", "vcpus": "two"}, "artifacts": []})"),
              HasSubstr("image.vcpus is not an integer"));
  EXPECT_THAT(error_of(R"({"image": {"name": "x", "version": "1"}})"), HasSubstr("no \"artifacts\" list"));
  EXPECT_THAT(error_of(R"({"image": {"name": "x", "version": "1"}, "artifacts": [{"file": "a/b", "size": 1,
      "sha256": ")" + std::string(64, '0') + R"("}]})"),
              HasSubstr("artifact \"a/b\" is not a plain file name"));
  EXPECT_THAT(error_of(R"({"image": {"name": "x", "version": "1"}, "storage": {"volumes": {}}, "artifacts": []})"),
              HasSubstr("storage.volumes is not a list"));
  EXPECT_THAT(error_of(R"({"image": {"name": "x", "version": "1"}, "artifacts": [], "imported": {"file": "b.tar",
      "disks": [{"member": "a.img", "use": "root", "file": "../root.img"}]}})"),
              HasSubstr("imported disk \"../root.img\" is not a plain file name"));
}

TEST(ImageManifest, AnArtifactsSha256MayBeLeftOutButNotMalformed) {
  ImageManifest m;
  m.name = "x";
  m.version = "1";
  m.artifacts = {{"disk.raw", 1 << 20, ""}, {"vmlinuz", 4096, std::string(64, 'a')}};
  std::string text = write_image_manifest(m);
  EXPECT_THAT(text, HasSubstr("\"file\": \"disk.raw\",\n      \"size\": 1048576\n    }"))
      << "a digest not taken is no key, not an empty one";
  auto read = read_image_manifest(text, "m.json");
  ASSERT_TRUE(read) << read.error().to_string();
  EXPECT_EQ(read->artifacts, m.artifacts);
  EXPECT_THAT(error_of(R"({"image": {"name": "x", "version": "1"}, "artifacts": [{"file": "a", "size": 1,
      "sha256": "f00d"}]})"),
              HasSubstr("artifact \"a\": sha256 \"f00d\" is not 64 hex digits"));
}

}  // namespace
}  // namespace kiln
