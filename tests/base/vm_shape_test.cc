// One rule for a VM's memory and virtual CPUs, whichever door a value comes
// in by: a recipe's [output], a Xen config, an image's manifest (here) and
// `kiln boot --memory/--vcpus` (tests/cli/boot_command_test.cc). Each door
// gives the rule's reason, behind its own name for where the value was
// written.
#include "base/vm_shape.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "base/size.h"
#include "formats/image/image_manifest.h"
#include "formats/domain/xen_config.h"
#include "recipes/recipe_parser.h"

namespace kiln {
namespace {

using ::testing::HasSubstr;

constexpr std::string_view kTooLittle = "is less than the 64 MiB a Debian guest needs to boot";

TEST(VmShape, MemoryFrom64MiBTo16TiB) {
  EXPECT_EQ(vm_memory_problem(64 * kMiB), "");
  EXPECT_EQ(vm_memory_problem(uint64_t{16} << 40), "");
  EXPECT_EQ(vm_memory_problem(1024), "1.0 KiB is less than the 64 MiB a Debian guest needs to boot");
  EXPECT_EQ(vm_memory_problem(0), "0 B is less than the 64 MiB a Debian guest needs to boot");
  EXPECT_THAT(vm_memory_problem((uint64_t{16} << 40) + kMiB), HasSubstr("16777217 MiB is more than the 16777216 MiB (16 TiB) a VM may have"));
}

TEST(VmShape, MemoryInMiBCannotOverflowIntoAcceptance) {
  EXPECT_EQ(vm_memory_mib_problem(64), "");
  EXPECT_THAT(vm_memory_mib_problem(32), HasSubstr(kTooLittle));
  // 2^44 MiB is 2^64 bytes: wrapped to 0 it would read as "too little".
  EXPECT_THAT(vm_memory_mib_problem(uint64_t{1} << 44), HasSubstr("is more than"));
  EXPECT_THAT(vm_memory_mib_problem(UINT64_MAX), HasSubstr("is more than"));
}

TEST(VmShape, VcpusFrom1To255) {
  EXPECT_EQ(vm_vcpus_problem(1), "");
  EXPECT_EQ(vm_vcpus_problem(255), "");
  EXPECT_EQ(vm_vcpus_problem(0), "0 virtual CPUs: expected 1 to 255");
  EXPECT_EQ(vm_vcpus_problem(256), "256 virtual CPUs: expected 1 to 255");
  EXPECT_EQ(vm_vcpus_problem(-3), "-3 virtual CPUs: expected 1 to 255");
}

std::string recipe_error(std::string_view output) {
  std::string text = "[image]\nname = \"web\"\n[bootstrap]\nsuite = \"bookworm\"\n[output]\n" + std::string(output);
  auto recipe = parse_recipe(text, "r.toml", ".", {});
  return recipe ? "(parsed fine)" : recipe.error().to_string();
}

TEST(VmShape, ARecipeNamesItsLineAndColumn) {
  EXPECT_EQ(recipe_error("memory = \"1K\"\n"),
            "r.toml:6:10: output.memory: 1.0 KiB is less than the 64 MiB a Debian guest needs to boot");
  EXPECT_EQ(recipe_error("memory = \"32M\"\n"),
            "r.toml:6:10: output.memory: 32 MiB is less than the 64 MiB a Debian guest needs to boot");
  EXPECT_EQ(recipe_error("vcpus = 300\n"), "r.toml:6:9: output.vcpus: 300 virtual CPUs: expected 1 to 255");
  EXPECT_EQ(recipe_error("memory = \"64M\"\nvcpus = 255\n"), "(parsed fine)");
}

std::string config_error(std::string_view text) {
  auto spec = parse_xen_config(text, "web.cfg");
  return spec ? "(parsed fine)" : spec.error().to_string();
}

TEST(VmShape, AXenConfigNamesItsLine) {
  EXPECT_EQ(config_error("name = 'a'\nmemory = 32\n"),
            "web.cfg:2:10: memory = 32: 32 MiB is less than the 64 MiB a Debian guest needs to boot");
  EXPECT_THAT(config_error("name = 'a'\nmemory = 99999999999999999\n"), HasSubstr("web.cfg:2:10: memory = "));
  EXPECT_EQ(config_error("name = 'a'\nvcpus = 0\n"), "web.cfg:2:9: vcpus = 0: 0 virtual CPUs: expected 1 to 255");
}

std::string manifest_error(std::string_view image_fields) {
  std::string text = R"({"image": {"name": "x", "version": "1", )" + std::string(image_fields) + R"(}, "artifacts": []})";
  auto manifest = read_image_manifest(text, "m.json");
  return manifest ? "(read fine)" : manifest.error().to_string();
}

TEST(VmShape, AManifestNamesItsField) {
  EXPECT_THAT(manifest_error(R"("memory_mib": 1, "vcpus": 1)"),
              HasSubstr("image.memory_mib: 1.0 MiB is less than the 64 MiB a Debian guest needs to boot"));
  EXPECT_THAT(manifest_error(R"("memory_mib": 512, "vcpus": 1000)"),
              HasSubstr("image.vcpus: 1000 virtual CPUs: expected 1 to 255"));
  // 0: not recorded, as images baked before kiln recorded them have it.
  EXPECT_EQ(manifest_error(R"("memory_mib": 0, "vcpus": 0)"), "(read fine)");
}

}  // namespace
}  // namespace kiln
