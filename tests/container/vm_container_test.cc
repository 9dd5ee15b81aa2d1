// The domain container syntax: every expression in the layout of the
// original vm-container documents, mixed with Xen config lines; the
// stripped config; each syntax error with its FILE:LINE:COL; the order
// rule; and the generated reference kept in step with docs/.
#include "container/vm_container.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "formats/domain/xen_config.h"
#include "tests/test_support.h"

namespace kiln {
namespace {

using ::testing::HasSubstr;

// The examples of the 2005 paper, verbatim, between Xen lines.
constexpr std::string_view kFido = R"(# fido: a web server from canned parts
kernel = "/boot/vmlinuz-2.6.12-xen"
memory = 128
name = "fido"
[create
 /etc/
 file:///var/images/etc.cpio.gz
][end]
[image /var/images/fido-etc
 50MB
 fido_etc] [end]
[populate image
 /var/images/fido-etc
 /mnt/
 ftp://foo.org/images/etc.cpio.gz
][end]
[replace /etc/HOSTNAME
archive http://foo.org/images/etc.cpio.gz

FCDOBBS

] [end]
[copy /etc/resolv.conf
 http://foo.org/files/resolv.conf
 archive http://foo.org/images/etc.cpio.gz
][end]
[patch
 file:///var/images/fido-etc
 ftp://foo.org/images/fido-etc.patch1
 file:///var/images/fido-etc-patched
][end]
disk = ['file:/var/images/fido-root,sda1,w',
        'file:/var/images/fido-etc,sda2,w']
root = "/dev/sda1 ro"
)";

ContainerFile parse_ok(std::string_view text) {
  auto file = parse_container_file(text, "fido.domain");
  EXPECT_TRUE(file) << file.error().to_string();
  return file ? std::move(*file) : ContainerFile{};
}

// "FILE:LINE:COL: message" of a file that must not parse.
std::string parse_error(std::string_view text) {
  auto file = parse_container_file(text, "bad.domain");
  if (file) return "(parsed without error)";
  EXPECT_EQ(file.error().kind, ErrorKind::kBadInput);
  return file.error().to_string();
}

template <class T>
const T& body(const ContainerFile& file, size_t index) {
  return std::get<T>(file.expressions.at(index).body);
}

TEST(VmContainer, ReadsEveryExpressionOfTheOriginalDocumentsInOrder) {
  ContainerFile file = parse_ok(kFido);
  ASSERT_EQ(file.expressions.size(), 6u);
  const auto& create = body<CreateExpression>(file, 0);
  EXPECT_EQ(create.directory, "/etc/");
  EXPECT_EQ(create.uri, "file:///var/images/etc.cpio.gz");
  const auto& image = body<ImageExpression>(file, 1);
  EXPECT_EQ(image.path, "/var/images/fido-etc");
  EXPECT_EQ(image.size_bytes, 50'000'000u);
  EXPECT_EQ(image.label, "fido_etc");
  EXPECT_EQ(image.fs_type, "ext3");
  const auto& populate = body<PopulateExpression>(file, 2);
  EXPECT_EQ(populate.image, "/var/images/fido-etc");
  EXPECT_EQ(populate.mount_point, "/mnt/");
  EXPECT_EQ(populate.archive, "ftp://foo.org/images/etc.cpio.gz");
  const auto& replace = body<ReplaceExpression>(file, 3);
  EXPECT_EQ(replace.path, "/etc/HOSTNAME");
  EXPECT_EQ(replace.edit.archive, "http://foo.org/images/etc.cpio.gz");
  EXPECT_EQ(replace.text, "FCDOBBS\n");
  EXPECT_EQ(replace.edit.patch_uri, "");
  EXPECT_EQ(replace.edit.fork_uri, "");
  const auto& copy = body<CopyExpression>(file, 4);
  EXPECT_EQ(copy.path, "/etc/resolv.conf");
  EXPECT_EQ(copy.source, "http://foo.org/files/resolv.conf");
  EXPECT_EQ(copy.edit.archive, "http://foo.org/images/etc.cpio.gz");
  const auto& patch = body<PatchExpression>(file, 5);
  EXPECT_EQ(patch.target, "file:///var/images/fido-etc");
  EXPECT_EQ(patch.patch, "ftp://foo.org/images/fido-etc.patch1");
  EXPECT_EQ(patch.fork, "file:///var/images/fido-etc-patched");
}

TEST(VmContainer, ExpressionsKnowWhereTheyStart) {
  ContainerFile file = parse_ok(kFido);
  EXPECT_EQ(file.expressions[0].where.to_string(), "fido.domain:5:1");
  EXPECT_EQ(file.expressions[2].describe(), "[populate image] at fido.domain:12:1");
  EXPECT_EQ(file.expressions[5].where.line, 27);
}

TEST(VmContainer, TheStrippedConfigIsExactlyTheXenLines) {
  ContainerFile file = parse_ok(kFido);
  EXPECT_EQ(file.stripped, "# fido: a web server from canned parts\n"
                           "kernel = \"/boot/vmlinuz-2.6.12-xen\"\n"
                           "memory = 128\n"
                           "name = \"fido\"\n"
                           "disk = ['file:/var/images/fido-root,sda1,w',\n"
                           "        'file:/var/images/fido-etc,sda2,w']\n"
                           "root = \"/dev/sda1 ro\"\n");
  auto reread = parse_xen_config(file.stripped, "my-config");
  ASSERT_TRUE(reread) << reread.error().to_string();
  EXPECT_EQ(*reread, file.domain);
  EXPECT_EQ(file.domain.name, "fido");
  ASSERT_EQ(file.domain.disks.size(), 2u);
  EXPECT_EQ(file.domain.disks[1].path, "/var/images/fido-etc");
}

TEST(VmContainer, XenErrorsKeepTheirLineInTheContainerFile) {
  EXPECT_THAT(parse_error("[image /a 8M l][end]\nmemory = \"lots\"\n"), HasSubstr("bad.domain:2"));
  EXPECT_THAT(parse_error("[image /a 8M l][end]\nfrobnicate = 1\n"), HasSubstr("bad.domain:2"));
}

TEST(VmContainer, FieldsMayShareALineOrSpreadOverMany) {
  ContainerFile file = parse_ok("[image /i 2G root ext4][end]\n"
                                "[populate image /i\n\n   /mnt/\n\thttp://h/a.tar.xz   ]   [end]   \n"
                                "[patch /i\n/p.patch][end]\n");
  const auto& image = body<ImageExpression>(file, 0);
  EXPECT_EQ(image.size_bytes, 2ull << 30);
  EXPECT_EQ(image.fs_type, "ext4");
  EXPECT_EQ(body<PopulateExpression>(file, 1).archive, "http://h/a.tar.xz");
  EXPECT_EQ(body<PatchExpression>(file, 2).fork, "");
  EXPECT_EQ(file.stripped, "");
}

TEST(VmContainer, ABracketInsideAFieldBelongsToIt) {
  ContainerFile file = parse_ok("[populate image /i /mnt/ http://[::1]:8080/etc.cpio.gz] [end]\n");
  EXPECT_EQ(body<PopulateExpression>(file, 0).archive, "http://[::1]:8080/etc.cpio.gz");
}

TEST(VmContainer, ReplaceOptionsMakeAPatchAndAFork) {
  ContainerFile file = parse_ok("[replace /HOSTNAME archive file:///v/etc.cpio.gz patch file:///v/host.patch\n"
                                "fork file:///v/fido-etc.cpio.gz\n"
                                "\n"
                                "fido\n"
                                "] [end]\n");
  const auto& replace = body<ReplaceExpression>(file, 0);
  EXPECT_EQ(replace.edit.patch_uri, "file:///v/host.patch");
  EXPECT_EQ(replace.edit.fork_uri, "file:///v/fido-etc.cpio.gz");
  EXPECT_EQ(replace.text, "fido\n");
  ContainerFile copy = parse_ok("[copy /resolv.conf /src/resolv.conf archive /v/etc.cpio.gz fork /v/x.cpio.gz\n"
                                " patch /v/x.patch][end]\n");
  EXPECT_EQ(body<CopyExpression>(copy, 0).edit.fork_uri, "/v/x.cpio.gz");
  EXPECT_EQ(body<CopyExpression>(copy, 0).edit.patch_uri, "/v/x.patch");
}

TEST(VmContainer, ReplaceTextKeepsItsLinesBracketsAndInnerBlankLines) {
  ContainerFile file = parse_ok("[replace /etc/app.ini archive /v/etc.cpio\n"
                                "[main]\n"
                                "\n"
                                "  key = value ]\n"
                                "] [end]\n"
                                "[replace /etc/motd archive /v/etc.cpio\n"
                                "\n"
                                "fork lines need the blank separator\n"
                                "last words]  [end]\n"
                                "[replace /etc/empty archive /v/etc.cpio] [end]\n");
  EXPECT_EQ(body<ReplaceExpression>(file, 0).text, "[main]\n\n  key = value ]\n");
  EXPECT_EQ(body<ReplaceExpression>(file, 1).text, "fork lines need the blank separator\nlast words");
  EXPECT_EQ(body<ReplaceExpression>(file, 2).text, "");
}

TEST(VmContainer, AnExpressionWithoutEndIsAnError) {
  EXPECT_EQ(parse_error("memory = 64\n[image /var/images/fido-etc\n 50MB\n fido_etc]\nname = \"fido\"\n"),
            "bad.domain:5:1: expected [end] after the ']' at 4:10 that closes [image] (opened at line 2), found "
            "'name = \"fido\"'");
  EXPECT_EQ(parse_error("[create /etc/ file:///x.cpio.gz\n"),
            "bad.domain:1:32: expected ']' and [end] to close [create] (opened at line 1), found the end of the file");
  EXPECT_EQ(parse_error("[create /etc/ file:///x.cpio.gz]"),
            "bad.domain:1:33: expected [end] after the ']' at 1:32 that closes [create] (opened at line 1), found "
            "the end of the file");
  EXPECT_EQ(parse_error("[replace /HOSTNAME archive /e.cpio\n\nfido\n]\n"),
            "bad.domain:4:2: expected a line ending in '] [end]' to close [replace] (opened at line 1), found the "
            "end of the file");
  EXPECT_EQ(parse_error("[patch /i /p][end] memory = 64\n"),
            "bad.domain:1:20: expected the end of the line after [end], found 'memory = 64'");
  EXPECT_EQ(parse_error("[end]\n"), "bad.domain:1:1: expected an expression before [end]: this [end] closes nothing");
}

TEST(VmContainer, AnUnknownExpressionIsAnError) {
  EXPECT_EQ(parse_error("name = \"x\"\n  [mount /dev/sda1 /mnt][end]\n"),
            "bad.domain:2:4: expected an expression (create, image, populate image, replace, copy, patch) after "
            "'[', found 'mount'");
  EXPECT_EQ(parse_error("[populate disk /i /mnt/ /a.cpio][end]\n"),
            "bad.domain:1:11: expected 'image' after 'populate': the expression is [populate image IMAGE "
            "MOUNT-POINT URI]");
}

TEST(VmContainer, AWrongFieldCountIsAnError) {
  EXPECT_EQ(parse_error("[image /var/images/fido-etc\n 50MB] [end]\n"),
            "bad.domain:2:6: expected 3 or 4 fields for [image PATH SIZE LABEL [FSTYPE]], found 2");
  EXPECT_EQ(parse_error("[create /etc/ file:///a.cpio.gz file:///b.cpio.gz][end]\n"),
            "bad.domain:1:33: expected 2 fields for [create DIR URI], found 3");
  EXPECT_EQ(parse_error("[populate image /i /a.cpio][end]\n"),
            "bad.domain:1:27: expected 3 fields for [populate image IMAGE MOUNT-POINT URI], found 2");
  EXPECT_EQ(parse_error("[patch /i][end]\n"),
            "bad.domain:1:10: expected 2 or 3 fields for [patch TARGET-URI PATCH-URI [FORK-URI]], found 1");
  EXPECT_EQ(parse_error("[copy /etc/x /src archive][end]\n"),
            "bad.domain:1:26: expected 4 to 8 fields for [copy PATH SOURCE-URI archive URI [patch URI] [fork URI]], "
            "found 3");
  EXPECT_EQ(parse_error("[replace /x archive] [end]\n"),
            "bad.domain:1:20: expected 3 to 7 fields for [replace PATH archive URI [patch URI] [fork URI] TEXT], "
            "found 2");
}

TEST(VmContainer, BadFieldValuesAreErrorsAtTheField) {
  EXPECT_THAT(parse_error("[image /i fifty l][end]\n"), HasSubstr("bad.domain:1:11: expected the image size"));
  // A size in two words is a size and a label: the size is then too small.
  EXPECT_EQ(parse_error("[image /i 50 MB l][end]\n"),
            "bad.domain:1:11: expected an image size of at least 8M, found 50 (ext3 and ext4 need 8M for their journal, "
            "ext2 1M)");
  EXPECT_EQ(parse_error("[image /i 4M l ext4][end]\n"),
            "bad.domain:1:11: expected an image size of at least 8M, found 4M (ext3 and ext4 need 8M for their journal, "
            "ext2 1M)");
  EXPECT_EQ(parse_error("[image /i 512K l ext2][end]\n"),
            "bad.domain:1:11: expected an image size of at least 1M, found 512K (ext3 and ext4 need 8M for their journal, "
            "ext2 1M)");
  EXPECT_EQ(parse_error("[image /i 1G l xfs][end]\n"),
            "bad.domain:1:16: expected the filesystem type ext4, ext3 or ext2, found 'xfs'");
  EXPECT_EQ(parse_error("[image /i 1G a_label_far_too_long][end]\n"),
            "bad.domain:1:14: expected a filesystem label of at most 16 bytes, found 'a_label_far_too_long'");
  EXPECT_EQ(parse_error("[copy etc/x /src archive /e.cpio][end]\n"),
            "bad.domain:1:7: expected an absolute path inside the archive in [copy], like /etc/hostname, found "
            "'etc/x'");
  EXPECT_EQ(parse_error("[copy /x /src tarball /e.cpio][end]\n"),
            "bad.domain:1:15: expected 'archive' and the archive's URI in [copy], found 'tarball'");
  EXPECT_EQ(parse_error("[copy /x /src archive /e.cpio split /y][end]\n"),
            "bad.domain:1:31: expected the option 'patch URI' or 'fork URI' in [copy], found 'split'");
  EXPECT_EQ(parse_error("[copy /x /src archive /e.cpio fork /a fork /b][end]\n"),
            "bad.domain:1:39: expected 'fork' once in [copy], found it twice");
  EXPECT_EQ(parse_error("[copy /x /src archive /e.cpio patch][end]\n"),
            "bad.domain:1:36: expected a URI after 'patch' in [copy]");
}

TEST(VmContainer, AnExpressionNeedingWhatALaterOneMakesIsRefusedNamingBoth) {
  EXPECT_EQ(parse_error("[populate image /v/fido-etc /mnt/ file:///v/etc.cpio.gz][end]\n"
                        "[image /v/fido-etc 50MB fido_etc][end]\n"
                        "[create /etc/ /v//etc.cpio.gz][end]\n"),
            "bad.domain:1:1: expected [image] at bad.domain:2:1 before this [populate image]: it needs /v/fido-etc, "
            "which that expression makes; move it up");
  EXPECT_EQ(parse_error("[image /v/fido-etc 50MB fido_etc][end]\n"
                        "[populate image /v/fido-etc /mnt/ file:///v/etc.cpio.gz][end]\n"
                        "[create /etc/ /v//etc.cpio.gz][end]\n"),
            "bad.domain:2:1: expected [create] at bad.domain:3:1 before this [populate image]: it needs "
            "file:///v/etc.cpio.gz, which that expression makes; move it up");
  // In order, the same expressions are fine; so is using a resource another
  // expression also remakes later on.
  parse_ok("[create /etc/ /v/etc.cpio.gz][end]\n[image /v/fido-etc 50MB fido_etc][end]\n"
           "[populate image /v/fido-etc /mnt/ file:///v/etc.cpio.gz][end]\n"
           "[replace /x archive /v/etc.cpio.gz fork /v/etc.cpio.gz\n\nx\n] [end]\n");
}

TEST(VmContainer, ResourceKeysMatchSpellingsOfOneFile) {
  EXPECT_EQ(resource_key("file:///var/images/etc.cpio.gz"), "/var/images/etc.cpio.gz");
  EXPECT_EQ(resource_key("/var//images/./etc.cpio.gz"), "/var/images/etc.cpio.gz");
  EXPECT_EQ(resource_key("/var/images/dir/"), "/var/images/dir");
  EXPECT_EQ(resource_key("http://foo.org/images/etc.cpio.gz"), "http://foo.org/images/etc.cpio.gz");
}

// --- The reference ----------------------------------------------------------

TEST(VmContainerDocs, DocsFolderCopyIsUpToDate) {
  EXPECT_EQ(testing::read_text(testing::source_path("docs/container.md")), container_reference_markdown())
      << "regenerate with: build/kiln help container --markdown > docs/container.md";
}

TEST(VmContainerDocs, EveryExpressionIsDocumentedWithAnExampleThatParses) {
  std::string text = container_reference_text();
  std::string markdown = container_reference_markdown();
  for (const ExpressionInfo& info : container_expressions()) {
    std::string synopsis = "[" + std::string(info.name) + " " + std::string(info.fields) + "][end]";
    EXPECT_THAT(text, HasSubstr(synopsis)) << info.name;
    EXPECT_THAT(markdown, HasSubstr("`" + synopsis + "`")) << info.name;
    EXPECT_THAT(markdown, HasSubstr(std::string(info.example))) << info.name;
    auto parsed = parse_container_file(std::string(info.example) + "\n", "example");
    ASSERT_TRUE(parsed) << info.name << ": " << parsed.error().to_string();
    ASSERT_EQ(parsed->expressions.size(), 1u);
    EXPECT_EQ(parsed->expressions[0].kind(), info.kind);
  }
}

TEST(VmContainerDocs, HelpContainerPrintsTheReference) {
  auto result = testing::run_kiln({"help", "container"});
  EXPECT_EQ(result.exit_code, 0) << result.err;
  EXPECT_EQ(result.out, container_reference_text());
  auto markdown = testing::run_kiln({"help", "container", "--markdown"});
  EXPECT_EQ(markdown.out, container_reference_markdown());
}

}  // namespace
}  // namespace kiln
