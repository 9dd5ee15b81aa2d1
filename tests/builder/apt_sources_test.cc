// Which mirror a bake uses when the recipe names none.
#include "builder/apt_sources.h"

#include <gtest/gtest.h>

#include "tests/test_support.h"

namespace kiln {
namespace {

using testing::ScratchDir;
using testing::write_text;

TEST(HostMirror, PicksTheMainSuiteOfADeb822Source) {
  ScratchDir dir;
  write_text(dir / "os-release", "ID=debian\nVERSION_CODENAME=bookworm\n");
  write_text(dir / "apt/sources.list.d/debian.sources",
             "Types: deb\nURIs: http://security.example/debian-security\nSuites: bookworm-security\n"
             "Components: main\n\nTypes: deb\nURIs: http://mirror.example/debian\n"
             "Suites: bookworm bookworm-updates\nComponents: main\n");
  write_text(dir / "apt/sources.list.d/cloud.list", "deb https://packages.example/apt cloud-sdk main\n");
  EXPECT_EQ(host_debian_mirror(dir / "apt", dir / "os-release"), "http://mirror.example/debian");
}

TEST(HostMirror, ReadsOneLineSourcesWithOptions) {
  ScratchDir dir;
  write_text(dir / "os-release", "VERSION_CODENAME=\"bookworm\"\n");
  write_text(dir / "apt/sources.list",
             "# comment\ndeb-src http://src.example/debian bookworm main\n"
             "deb [arch=amd64 signed-by=/k.gpg] http://local.example/debian bookworm main contrib\n");
  EXPECT_EQ(host_debian_mirror(dir / "apt", dir / "os-release"), "http://local.example/debian");
}

TEST(HostMirror, FallsBackToDebDebianOrg) {
  ScratchDir dir;
  write_text(dir / "os-release", "VERSION_CODENAME=bookworm\n");
  EXPECT_EQ(host_debian_mirror(dir / "apt", dir / "os-release"), "http://deb.debian.org/debian");
}

}  // namespace
}  // namespace kiln
