// apt's Packages index as the package cache reads it: each .deb's signed
// SHA256, and the file name apt gives it in /var/cache/apt/archives.
#include "formats/tree/packages_index.h"

#include <gtest/gtest.h>

#include "formats/tree/deb822.h"
#include "formats/tree/dpkg_status.h"
#include "tests/test_support.h"

namespace kiln {
namespace {

constexpr std::string_view kPackages = R"(Package: adduser
Version: 3.134
Installed-Size: 849
Maintainer: Debian Adduser Developers <adduser@packages.debian.org>
Architecture: all
Depends: passwd
Description: add and remove users and groups
 This package includes the 'adduser' and 'deluser' commands.
Filename: pool/main/a/adduser/adduser_3.134_all.deb
Size: 1376
SHA256: 8DE2DE26D30E8D0A8F7F2D9D5B9B9B8D3C4D0F8C1F9E1F3A1B2C3D4E5F6A7B8C

Package: libc6
Version: 2.36-9+deb12u4
Architecture: amd64
Filename: pool/main/g/glibc/libc6_2.36-9+deb12u4_amd64.deb
Size: 2757936
SHA256: 1111111111111111111111111111111111111111111111111111111111111111

Package: openssh-server
Version: 1:9.2p1-2+deb12u3
Architecture: amd64
Size: 456
SHA256: 2222222222222222222222222222222222222222222222222222222222222222

Package: no-hash
Version: 1
Architecture: amd64
MD5sum: 0123456789abcdef0123456789abcdef
)";

TEST(PackagesIndex, ListsEachDebByItsSha256) {
  PackagesIndex index;
  index.add(kPackages);
  EXPECT_EQ(index.size(), 3u);  // no-hash has no SHA256: the cache cannot vouch for it
  const IndexedPackage* libc = index.find_by_sha256(std::string(64, '1'));
  ASSERT_NE(libc, nullptr);
  EXPECT_EQ(libc->name, "libc6");
  EXPECT_EQ(libc->version, "2.36-9+deb12u4");
  EXPECT_EQ(libc->size, 2757936u);
  // Hashes are compared in lower case, however the index writes them.
  EXPECT_NE(index.find_by_sha256("8de2de26d30e8d0a8f7f2d9d5b9b9b8d3c4d0f8c1f9e1f3a1b2c3d4e5f6a7b8c"), nullptr);
  EXPECT_EQ(index.find_by_sha256(std::string(64, '3')), nullptr);
}

TEST(PackagesIndex, NamesFilesAsAptDoes) {
  PackagesIndex index;
  index.add(kPackages);
  const IndexedPackage* ssh = index.find_by_sha256(std::string(64, '2'));
  ASSERT_NE(ssh, nullptr);
  // apt's QuoteString: the epoch's colon becomes %3a.
  EXPECT_EQ(apt_archive_file_name(*ssh), "openssh-server_1%3a9.2p1-2+deb12u3_amd64.deb");
  EXPECT_EQ(index.find_by_archive_file_name("openssh-server_1%3a9.2p1-2+deb12u3_amd64.deb"), ssh);
  EXPECT_EQ(index.find_by_archive_file_name("adduser_3.134_all.deb")->name, "adduser");
  EXPECT_EQ(index.find_by_archive_file_name("adduser_3.135_all.deb"), nullptr);
}

TEST(PackagesIndex, LoadsTheUncompressedListsAptKeeps) {
  testing::ScratchDir dir;
  testing::write_text(dir / "mirror_debian_dists_bookworm_main_binary-amd64_Packages", std::string(kPackages));
  testing::write_text(dir / "mirror_debian_dists_bookworm_InRelease", "Origin: Debian\n");
  auto index = PackagesIndex::load_apt_lists(dir.path());
  ASSERT_TRUE(index) << index.error().to_string();
  EXPECT_EQ(index->size(), 3u);
}

TEST(Deb822, ParagraphsAreSeparatedByBlankLinesAndContinuationsSkipped) {
  std::vector<std::string> names;
  for_each_paragraph("Package: a\nDescription: x\n more\n\n\nPackage: b\r\nStatus: install ok installed\r\n",
                     [&](const Deb822Paragraph& paragraph) {
                       names.emplace_back(paragraph.get("package"));
                       EXPECT_EQ(paragraph.get("Missing"), "");
                     });
  EXPECT_EQ(names, (std::vector<std::string>{"a", "b"}));
  auto installed = installed_packages("Package: b\nVersion: 1\nArchitecture: all\nStatus: install ok installed\n\n"
                                      "Package: a\nStatus: deinstall ok config-files\n");
  ASSERT_EQ(installed.size(), 1u);
  EXPECT_EQ(installed[0].name, "b");
}

}  // namespace
}  // namespace kiln
