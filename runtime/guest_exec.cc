#include "runtime/guest_exec.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <optional>

#include "base/files.h"
#include "base/stale_temps.h"
#include "formats/tree/rootfs_tree.h"
#include "runtime/instance_manager.h"

namespace kiln {
namespace {

namespace fs = std::filesystem;

// The instance as one that can run a command now, or why not.
Result<InstanceRecord> ready_instance(const InstanceStore& store, const std::string& name, const ExecWait& wait) {
  auto record = store.load(name);
  if (!record) return fail(ErrorKind::kBadInput, "no instance named {} (see `kiln list`)", name);
  switch (record->state) {
    case InstanceState::kPaused:
      return fail(ErrorKind::kFailed, "{} is paused: `kiln unpause {}` first", name, name);
    case InstanceState::kStopped:
    case InstanceState::kCrashed:
    case InstanceState::kSaved:
      return fail(ErrorKind::kFailed, "{} is not running (state: {})", name, state_name(record->state));
    default:
      break;
  }
  if (!record->ready_seconds) {
    if (wait.ready.count() == 0)
      return fail(ErrorKind::kFailed, "{} is not ready yet; --wait-ready=SECONDS waits for it", name);
    KILN_ASSIGN(*record, wait_ready(store, name, wait.ready));
  }
  KILN_TRY(check_exec_agent(name, record->guest_exec));
  return record;
}

// A shell command line run with positional arguments: "$1", "$2"... are
// never parsed by the shell, whatever the paths hold.
ExecRequest shell(std::string script, std::vector<std::string> arguments) {
  ExecRequest request;
  request.argv = {"/bin/sh", "-c", std::move(script), "kiln-cp"};
  request.argv.insert(request.argv.end(), arguments.begin(), arguments.end());
  return request;
}

Result<> expect_success(const ExecExit& exit, const std::string& errors, const std::string& what) {
  if (shell_exit_code(exit) == 0) return {};
  std::string detail = errors;
  while (!detail.empty() && detail.back() == '\n') detail.pop_back();
  return fail(ErrorKind::kFailed, "{}: {}", what,
              detail.empty() ? fmt::format("failed in the guest (exit {})", shell_exit_code(exit)) : detail);
}

// Runs a copy's guest side with `input` as its stdin and `output` taking its
// stdout; the error carries the guest's own message.
Result<> run_copy_command(ExecTarget& target, const std::string& name, const ExecRequest& request, int input,
                          const std::function<Result<>(std::string_view)>& output, const ExecWait& wait,
                          const std::string& what) {
  std::string errors;
  ExecIo io;
  io.stdin_fd = input;
  io.out = output;
  io.err = [&](std::string_view bytes) -> Result<> {
    if (errors.size() < 4096) errors.append(bytes);
    return {};
  };
  KILN_ASSIGN(ExecExit exit, exec_in_instance(target, name, request, io, wait));
  return expect_success(exit, errors, what);
}

// Where the data of a copy into the guest comes from: stdin, or under UML
// the file "data" in the host directory KILN_CP_INBOX, mounted read-only
// with hostfs for as long as it takes to open it.
constexpr const char* kInputFromInbox = R"SH(set -e
if [ -n "${KILN_CP_INBOX:-}" ]; then
  inbox=$(mktemp -d)
  mount -t hostfs -o ro,"$KILN_CP_INBOX" none "$inbox"
  exec < "$inbox/data"
  umount -l "$inbox"
  rmdir "$inbox"
fi
)SH";

// The guest side of a copy into the guest: $1 the destination, $2 the
// source's name, $3 its mode (files only). The data is the input above.
constexpr const char* kReceiveFile = R"SH(dest=$1
[ -d "$dest" ] && dest=$dest/$2
tmp=$dest.kiln-cp.$$
trap 'rm -f "$tmp"' EXIT
cat > "$tmp"
chmod "$3" "$tmp"
mv -f "$tmp" "$dest"
trap - EXIT)SH";

// The tree arrives as a tar of the directory itself ("./", "./a"...).
constexpr const char* kReceiveTree = R"SH(dest=$1
[ -d "$dest" ] && dest=$dest/$2
if [ -e "$dest" ]; then echo "$dest: already exists" >&2; exit 1; fi
tmp=$(dirname "$dest")/.kiln-cp.$$
mkdir "$tmp"
trap 'rm -rf "$tmp"' EXIT
tar -x --no-same-owner -f - -C "$tmp"
mv "$tmp" "$dest"
trap - EXIT)SH";

// What the guest path is: "file MODE", "directory MODE" or an error.
constexpr const char* kDescribe = R"SH(set -e
if [ -d "$1" ]; then printf 'directory %s\n' "$(stat -c %a -- "$1")"
elif [ -f "$1" ]; then printf 'file %s\n' "$(stat -c %a -- "$1")"
else echo "$1: no such file or directory" >&2; exit 1; fi)SH";

constexpr const char* kSendTree = R"SH(set -e
cd "$(dirname "$1")"
tar -c -f - -- "$(basename "$1")")SH";

std::string leaf_name(const std::string& path) {
  std::string trimmed = path;
  while (trimmed.size() > 1 && trimmed.back() == '/') trimmed.pop_back();
  return fs::path(trimmed).filename().string();
}

constexpr std::string_view kInboxPrefix = "cp-inbox";

// How the data of a copy reaches the guest. Under UML it does not take the
// serial line, which Debian's linux.uml reads from its host descriptor a
// byte per system call (about a megabyte a second): kiln stages it as
// "data" in a directory of its own inside the instance's disk directory,
// which the UML sandbox already lets the guest reach, and the guest mounts
// that directory with hostfs. Elsewhere the data goes on the command's stdin.
class CopyInput {
 public:
  static Result<CopyInput> open(ExecTarget& target, const std::string& name, const ExecWait& wait) {
    KILN_ASSIGN(ExecEndpoint endpoint, target.reach(name, wait));
    CopyInput input;
    const fs::path& inbox_root = endpoint.inbox_root;
    // mount(8) splits its options at commas: such a path takes the line.
    if (!inbox_root.empty() && inbox_root.string().find(',') == std::string::npos) {
      // What a copy that was killed left there goes with the next one.
      remove_stale_temp_dirs(inbox_root, kInboxPrefix);
      KILN_ASSIGN(TempDir inbox, create_tagged_temp_dir(inbox_root, kInboxPrefix));
      input.inbox_.emplace(std::move(inbox));
    }
    return input;
  }

  // Where to write the data: the staged file, or "" to send it on stdin.
  fs::path staged_file() const { return inbox_ ? inbox_->path() / "data" : fs::path(); }

  // The guest side's request: `script` after the input is set up.
  ExecRequest request(const char* script, std::vector<std::string> arguments) const {
    ExecRequest request = shell(std::string(kInputFromInbox) + script, std::move(arguments));
    if (inbox_) request.env.push_back("KILN_CP_INBOX=" + inbox_->path().string());
    return request;
  }

 private:
  std::optional<TempDir> inbox_;
};

Result<> copy_to_guest(ExecTarget& target, const CopyRequest& request, const ExecWait& wait) {
  struct stat st;
  if (::stat(request.host_path.c_str(), &st) != 0) return fail_errno("cannot copy", request.host_path.string(), errno);
  std::string what = fmt::format("{} -> {}:{}", request.host_path.string(), request.instance, request.guest_path);
  std::string name = leaf_name(request.host_path.string());
  bool tree = S_ISDIR(st.st_mode);
  if (tree && !request.recursive)
    return fail(ErrorKind::kBadInput, "{} is a directory: copy it with -r", request.host_path.string());
  if (!tree && !S_ISREG(st.st_mode))
    return fail(ErrorKind::kBadInput, "{}: not a file or directory", request.host_path.string());
  KILN_ASSIGN(CopyInput input, CopyInput::open(target, request.instance, wait));
  bool staged = !input.staged_file().empty();
  fs::path data = staged ? input.staged_file() : request.host_path;
  std::optional<TempDir> staging;
  if (tree) {
    // The tree goes as a tar kiln writes itself; the guest's tar unpacks it.
    if (!staged) {
      KILN_ASSIGN(TempDir dir, TempDir::create(fs::temp_directory_path(), "kiln-cp"));
      data = dir.path() / "tree.tar";
      staging.emplace(std::move(dir));
    }
    KILN_TRY(write_tree_as_tar(request.host_path, data, 0));
  } else if (staged) {
    KILN_ASSIGN(UniqueFd source, open_file(request.host_path, O_RDONLY));
    KILN_ASSIGN(UniqueFd copy, open_file(data, O_WRONLY | O_CREAT | O_EXCL, 0600));
    KILN_TRY(copy_whole_file(source.get(), copy.get(), what));
  }
  UniqueFd on_stdin;
  if (!staged) {
    KILN_ASSIGN(on_stdin, open_file(data, O_RDONLY));
  }
  ExecRequest guest_side = tree ? input.request(kReceiveTree, {request.guest_path, name})
                                : input.request(kReceiveFile, {request.guest_path, name,
                                                               fmt::format("{:o}", st.st_mode & 07777)});
  return run_copy_command(target, request.instance, guest_side, on_stdin ? on_stdin.get() : -1, {}, wait, what);
}

Result<> copy_from_guest(ExecTarget& target, const CopyRequest& request, const ExecWait& wait) {
  std::string what = fmt::format("{}:{} -> {}", request.instance, request.guest_path, request.host_path.string());
  std::string description;
  auto collect = [&](std::string_view bytes) -> Result<> {
    description.append(bytes);
    return {};
  };
  KILN_TRY(run_copy_command(target, request.instance, shell(kDescribe, {request.guest_path}), -1, collect, wait, what));
  bool directory = description.starts_with("directory ");
  unsigned mode = static_cast<unsigned>(std::strtoul(description.c_str() + description.find(' ') + 1, nullptr, 8));
  fs::path dest = request.host_path;
  std::error_code ec;
  if (fs::is_directory(dest, ec)) dest /= leaf_name(request.guest_path);
  if (!directory) {
    KILN_ASSIGN(AtomicFile file, AtomicFile::create(dest, static_cast<int>(mode & 07777)));
    auto to_file = [&](std::string_view bytes) { return file.write(bytes); };
    KILN_TRY(run_copy_command(target, request.instance, shell("exec cat -- \"$1\"", {request.guest_path}), -1,
                              to_file, wait, what));
    if (::fchmod(file.fd(), mode & 07777) != 0) return fail_errno("chmod", file.temp_path().string(), errno);
    return file.commit();
  }
  if (!request.recursive) return fail(ErrorKind::kBadInput, "{}:{} is a directory: copy it with -r", request.instance,
                                      request.guest_path);
  if (fs::exists(dest, ec)) return fail(ErrorKind::kBadInput, "{}: already exists", dest.string());
  // The guest's tar is untrusted input: kiln's own extractor unpacks it, and
  // nothing lands outside the staging directory.
  KILN_ASSIGN(TempDir staging, TempDir::create(dest.parent_path(), "kiln-cp"));
  fs::path tar = staging.path() / "tree.tar";
  {
    KILN_ASSIGN(AtomicFile archive, AtomicFile::create(tar, 0600));
    auto to_archive = [&](std::string_view bytes) { return archive.write(bytes); };
    KILN_TRY(run_copy_command(target, request.instance, shell(kSendTree, {request.guest_path}), -1, to_archive, wait,
                              what));
    KILN_TRY(archive.commit());
  }
  fs::path tree = staging.path() / "tree";
  fs::create_directory(tree, ec);
  if (ec) return fail_errno("mkdir", tree.string(), ec.value());
  KILN_TRY(extract_to_tree(tar, tree));
  fs::rename(tree / leaf_name(request.guest_path), dest, ec);
  if (ec) return fail_errno("cannot move into place", dest.string(), ec.value());
  return {};
}

}  // namespace

Result<> check_exec_agent(const std::string& name, const std::string& exec) {
  if (exec.empty())
    return fail(ErrorKind::kFailed,
                "{}: its image was baked by a kiln without the exec agent; bake the image again to use kiln exec",
                name);
  if (exec == "none")
    return fail(ErrorKind::kFailed, "{}: its image has no exec agent (this kiln has none for its architecture)", name);
  return {};
}

Result<ExecEndpoint> OwnExecTarget::reach(const std::string& name, const ExecWait& wait) {
  KILN_ASSIGN(InstanceRecord record, ready_instance(store_, name, wait));
  ExecEndpoint endpoint{store_.paths(name).exec_socket, wait.greeting, {}};
  if (record.spec.backend == BackendKind::kUml) endpoint.inbox_root = store_.paths(name).disk_dir;
  return endpoint;
}

Result<ExecExit> exec_in_instance(ExecTarget& target, const std::string& name, const ExecRequest& request,
                                  const ExecIo& io, const ExecWait& wait) {
  KILN_ASSIGN(ExecEndpoint endpoint, target.reach(name, wait));
  return run_in_guest(endpoint.socket, name, request, io, endpoint.greeting);
}

Result<> copy_with_guest(ExecTarget& target, const CopyRequest& request, const ExecWait& wait) {
  if (request.to_guest) return copy_to_guest(target, request, wait);
  return copy_from_guest(target, request, wait);
}

}  // namespace kiln
