// HostileArchives: the archives an attacker would hand kiln to make it write
// outside the tree it unpacks into (a symlink, then a file through it; a
// hardlink through a symlink; a name climbing out with ".."), each aimed at
// a canary directory on the host, and the Canary that proves nothing
// reached it. Every way in (extracting, `kiln diff`, `kiln patch`,
// `kiln make-fs`, the container expressions, bootstrap.from) runs the same
// corpus.
#pragma once

#include <sys/stat.h>

#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "tests/formats/archive_builder.h"
#include "tests/test_support.h"

namespace kiln::testing {

// A directory outside the tree under test, with a file and a subdirectory;
// untouched() compares every entry's type, mode, size, times, content and
// link target with what they were when it was made.
class Canary {
 public:
  explicit Canary(std::filesystem::path dir) : dir_(std::move(dir)) {
    std::filesystem::create_directories(dir_ / "sub");
    write_text(dir_ / "FILE", "canary: must never change\n");
    write_text(dir_ / "sub/inner", "canary inner\n");
    before_ = snapshot();
  }

  const std::filesystem::path& path() const { return dir_; }
  std::string file() const { return (dir_ / "FILE").string(); }

  ::testing::AssertionResult untouched() const {
    std::string now = snapshot();
    if (now == before_) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << "the canary " << dir_ << " changed.\nbefore:\n"
                                         << before_ << "after:\n"
                                         << now;
  }

  // No file in `tree` may be the canary's own inode (a hardlink out).
  ::testing::AssertionResult not_linked_from(const std::filesystem::path& tree) const {
    std::map<std::pair<dev_t, ino_t>, std::string> ours;
    for (const std::string& name : list_tree(dir_)) {
      struct stat st;
      if (::lstat((dir_ / name).c_str(), &st) == 0) ours[{st.st_dev, st.st_ino}] = name;
    }
    std::error_code ec;
    if (!std::filesystem::exists(tree, ec)) return ::testing::AssertionSuccess();
    for (const std::string& name : list_tree(tree)) {
      struct stat st;
      if (::lstat((tree / name).c_str(), &st) != 0) continue;
      if (auto it = ours.find({st.st_dev, st.st_ino}); it != ours.end())
        return ::testing::AssertionFailure() << tree / name << " is a hardlink to the canary's " << it->second;
    }
    return ::testing::AssertionSuccess();
  }

 private:
  std::string snapshot() const {
    std::string out;
    for (const std::string& name : list_tree(dir_)) {
      std::filesystem::path path = dir_ / name;
      struct stat st;
      if (::lstat(path.c_str(), &st) != 0) continue;
      out += name + " " + std::to_string(st.st_mode) + " " + std::to_string(st.st_size) + " " +
             std::to_string(st.st_mtim.tv_sec) + "." + std::to_string(st.st_mtim.tv_nsec) + " " +
             std::to_string(st.st_nlink);
      if (S_ISREG(st.st_mode)) out += " " + read_text(path);
      if (S_ISLNK(st.st_mode)) out += " -> " + std::filesystem::read_symlink(path).string();
      out += "\n";
    }
    return out;
  }

  std::filesystem::path dir_;
  std::string before_;
};

struct HostileArchive {
  std::string name;
  // Adds the entries; `canary` is the canary directory's absolute path.
  std::function<void(ArchiveBuilder&, const std::string& canary)> add;
  // cpio keeps hardlinks as inode numbers, not names: tar only.
  bool tar_only = false;
};

inline std::string relative_climb(const std::string& absolute) {
  std::string climb;
  for (int i = 0; i < 24; ++i) climb += "../";
  return climb + absolute.substr(1);
}

inline std::vector<HostileArchive> hostile_archives() {
  return {
      {"SymlinkThenFileThroughIt",
       [](ArchiveBuilder& a, const std::string& c) {
         a.symlink("evil", c).file("evil/FILE", "pwned\n").file("evil/NEW", "pwned\n");
       }},
      {"SymlinkThenDirectoryThroughIt",
       [](ArchiveBuilder& a, const std::string& c) {
         a.symlink("evil", c).directory("evil/made", {0700}).file("evil/made/x", "pwned\n");
       }},
      {"SymlinkToAMissingHostDirectory",
       [](ArchiveBuilder& a, const std::string& c) { a.symlink("evil", c + "/new/deeper").file("evil/x", "pwned\n"); }},
      {"SymlinkClobberingAHostFile",
       [](ArchiveBuilder& a, const std::string& c) { a.symlink("link", c + "/FILE").file("link", "pwned\n"); }},
      {"SymlinkThenReplaceWhatIsBehindIt",
       [](ArchiveBuilder& a, const std::string& c) {
         a.symlink("evil", c).directory("evil/FILE").file("evil/sub", "pwned\n");
       }},
      {"RelativeSymlinkClimbingOut",
       [](ArchiveBuilder& a, const std::string& c) {
         a.directory("d").symlink("d/up", relative_climb("/")).file("d/up" + c + "/FILE", "pwned\n");
       }},
      {"SymlinkChain",
       [](ArchiveBuilder& a, const std::string& c) {
         a.symlink("one", "two").symlink("two", c).file("one/FILE", "pwned\n");
       }},
      {"HardlinkThroughASymlink",
       [](ArchiveBuilder& a, const std::string& c) {
         a.symlink("evil", c).hardlink("stolen", "evil/FILE").file("stolen", "pwned\n");
       },
       true},
      {"HardlinkToASymlinkedFile",
       [](ArchiveBuilder& a, const std::string& c) {
         a.symlink("link", c + "/FILE").hardlink("second", "link").file("second/x", "pwned\n");
       },
       true},
      {"DotDotName", [](ArchiveBuilder& a, const std::string& c) { a.file(relative_climb(c) + "/FILE", "pwned\n"); }},
      {"AbsoluteName", [](ArchiveBuilder& a, const std::string& c) { a.file(c + "/FILE", "pwned\n"); }},
      {"ControlCharactersInNames",
       [](ArchiveBuilder& a, const std::string& c) {
         a.symlink("esc\x1b[2J\a", c).file("esc\x1b[2J\a/FILE", "pwned\n").file("bel\a\x7f", "data\n");
       }},
  };
}

enum class HostileForm { kPaxTar, kGnuTar, kCpio };

inline std::vector<HostileForm> hostile_forms(const HostileArchive& archive) {
  if (archive.tar_only) return {HostileForm::kPaxTar, HostileForm::kGnuTar};
  return {HostileForm::kPaxTar, HostileForm::kGnuTar, HostileForm::kCpio};
}

inline std::string form_name(HostileForm form) {
  switch (form) {
    case HostileForm::kPaxTar: return "pax";
    case HostileForm::kGnuTar: return "gnutar";
    case HostileForm::kCpio: return "cpio";
  }
  return "?";
}

// Writes the archive in that form to `path`, after a harmless first entry.
inline std::filesystem::path write_hostile(const HostileArchive& archive, HostileForm form, const Canary& canary,
                                           const std::filesystem::path& path) {
  ArchiveFormat format = form == HostileForm::kPaxTar   ? ArchiveFormat::kPax
                         : form == HostileForm::kGnuTar ? ArchiveFormat::kGnuTar
                                                        : ArchiveFormat::kCpioNewc;
  ArchiveBuilder builder(format);
  builder.directory("etc").file("etc/hostname", "debian\n");
  archive.add(builder, canary.path().string());
  return builder.write_to(path);
}

}  // namespace kiln::testing
