// A sandbox for fuzz targets that write into a directory tree (extracting
// an archive, applying a patch), so that a path-resolution bug the fuzzer
// finds lands in a scratch filesystem instead of on the host.
//
// With a private mount namespace (root, or unprivileged user namespaces),
// the process moves into a chroot on a fresh tmpfs, mounted over /tmp in
// that namespace only (the host sees nothing of it): the host's /usr, /proc
// and /dev are bound in (read-only for /usr, so programs such as e2fsck run)
// and so are the directories named on the command line (corpora, the
// artifact prefix), at their own absolute paths, so libFuzzer keeps reading
// and writing them. A write through an absolute symlink ("/etc/passwd") then
// creates a file inside the tmpfs, where the target's property check sees it.
// Without a namespace the work directory is a plain temporary directory,
// and the run says so on stderr.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace kiln::fuzzing {

// Enters the sandbox; call it once, from LLVMFuzzerInitialize, with the
// fuzzer's arguments.
void enter_sandbox(int argc, char** argv);

// An empty work directory inside the sandbox, emptied on every call.
std::filesystem::path fresh_work_directory();
// A directory inside the sandbox for what a target makes once and keeps.
std::filesystem::path keep_directory();

// Aborts, naming the path, if anything appeared in the sandbox outside the
// work directory since enter_sandbox (checked in a chroot only).
void check_nothing_written_outside_work();

// The files and directories under `dir`, relative, sorted; symlinks are
// listed, not followed.
std::vector<std::string> list_tree(const std::filesystem::path& dir);

}  // namespace kiln::fuzzing
