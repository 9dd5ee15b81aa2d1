#include "container/container_runner.h"

#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <ctime>
#include <map>
#include <optional>
#include <set>
#include <variant>

#include "base/files.h"
#include "base/interrupt.h"
#include "base/size.h"
#include "fetch/uri_fetch.h"
#include "container/tree_patching.h"
#include "crypto/openpgp.h"
#include "base/uuid.h"
#include "formats/ext4/ext4_image.h"
#include "formats/tree/file_tree.h"
#include "formats/tree/rootfs_tree.h"
#include "formats/tree/tree_patch.h"
#include "container/vm_container.h"

namespace kiln {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr uint64_t kBlockSize = 4096;

template <class... F>
struct Overloaded : F... {
  using F::operator()...;
};

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// What an input is, for messages and for the signature rules.
enum class Role { kArchive, kPatch, kSource, kTarget };

std::string_view role_name(Role role) {
  switch (role) {
    case Role::kArchive: return "archive";
    case Role::kPatch: return "patch";
    case Role::kSource: return "source file";
    case Role::kTarget: return "patch target";
  }
  return "input";
}

struct Input {
  std::string uri;
  Role role;
};

// The resources an expression reads (not the images it writes into).
std::vector<Input> inputs_of(const ExpressionBody& body) {
  return std::visit(Overloaded{
                        [](const CreateExpression&) { return std::vector<Input>{}; },
                        [](const ImageExpression&) { return std::vector<Input>{}; },
                        [](const PopulateExpression& e) { return std::vector<Input>{{e.archive, Role::kArchive}}; },
                        [](const ReplaceExpression& e) { return std::vector<Input>{{e.edit.archive, Role::kArchive}}; },
                        [](const CopyExpression& e) {
                          return std::vector<Input>{{e.source, Role::kSource}, {e.edit.archive, Role::kArchive}};
                        },
                        [](const PatchExpression& e) {
                          return std::vector<Input>{{e.patch, Role::kPatch}, {e.target, Role::kTarget}};
                        },
                    },
                    body);
}

ArchiveCompression compression_for(std::string_view uri) {
  if (uri.ends_with(".xz")) return ArchiveCompression::kXz;
  if (uri.ends_with(".zst")) return ArchiveCompression::kZstd;
  if (uri.ends_with(".cpio")) return ArchiveCompression::kNone;
  return ArchiveCompression::kGzip;
}

std::string base_name(std::string_view uri) {
  std::string_view path = uri.substr(0, uri.find_first_of("?#"));
  while (path.ends_with('/')) path.remove_suffix(1);
  std::string name(path.substr(path.rfind('/') + 1));
  return name.empty() ? "resource" : name;
}

// A resource of the run: a file on this host (found, fetched or made) and,
// for an archive that [replace], [copy] or [patch] edits, its working copy.
struct Resource {
  std::string uri;
  fs::path local;
  std::optional<fs::path> tree;
  bool edited = false;
};

class Run {
 public:
  Run(const ContainerOptions& options, Reporter& reporter) : options_(options), reporter_(reporter) {}

  Result<ContainerResult> run() {
    Clock::time_point start = Clock::now();
    auto done = run_all();
    if (!done) note("failed: " + done.error().to_string());
    if (!options_.log.empty()) {
      auto logged = write_log();
      if (done && !logged) return std::unexpected(logged.error());
    }
    if (!done) return std::unexpected(done.error());
    result_.domain = file_.domain;
    result_.seconds = seconds_since(start);
    return std::move(result_);
  }

 private:
  Result<> run_all() {
    mtime_ = options_.mtime > 0 ? options_.mtime : static_cast<int64_t>(std::time(nullptr));
    base_ = fs::absolute(options_.container_file).parent_path();
    if (options_.require_signatures && options_.keyring.empty())
      return fail(ErrorKind::kBadInput, "--require-signatures needs --keyring FILE: the keys to trust");
    fs::path work_parent = options_.work_dir;
    if (work_parent.empty()) {
      const char* tmp = std::getenv("TMPDIR");
      work_parent = tmp && *tmp ? tmp : "/var/tmp";
    }
    KILN_ASSIGN(TempDir work, TempDir::create(work_parent, "kiln-container"));
    work_.emplace(std::move(work));
    if (!options_.keyring.empty()) {
      KILN_ASSIGN(TrustedKeys keys, TrustedKeys::load(options_.keyring));
      keys_.emplace(std::move(keys));
    }
    KILN_ASSIGN(std::string text, read_file(options_.container_file));
    KILN_TRY(check_signature(options_.container_file.string(), options_.container_file, "container file",
                             "the container file"));
    KILN_ASSIGN(file_, parse_container_file(text, options_.container_file.string()));
    note(fmt::format("read {}: {} expressions, {} bytes of Xen config", options_.container_file.string(),
                     file_.expressions.size(), file_.stripped.size()));
    KILN_TRY(gather());
    for (const Expression& expression : file_.expressions) {
      KILN_TRY(check_interrupted());
      Clock::time_point start = Clock::now();
      reporter_.step("container", expression.describe());
      auto summary = execute(expression);
      if (!summary) return std::unexpected(located(std::move(summary).error(), expression));
      double seconds = seconds_since(start);
      reporter_.done(*summary);
      note(fmt::format("{}: {} ({:.3f} s)", expression.describe(), *summary, seconds));
      result_.steps.push_back({expression.describe(), *summary, seconds});
    }
    if (!options_.stripped.empty()) {
      KILN_TRY(make_parent(options_.stripped));
      KILN_TRY(write_file_atomic(options_.stripped, file_.stripped));
      note("wrote the stripped Xen config to " + options_.stripped.string());
    }
    return {};
  }

  // --- Phase 1: locate or fetch every input, and check its signature --------

  Result<> gather() {
    // Where things go is known without fetching anything: check it first.
    for (const Expression& expression : file_.expressions) KILN_TRY(check_destinations(expression));
    std::set<std::string> made;
    for (const Expression& expression : file_.expressions) {
      for (const Input& input : inputs_of(expression.body)) {
        std::string uri = resolve(input.uri);
        std::string key = resource_key(uri);
        if (made.contains(key) || resources_.contains(key)) continue;
        auto obtained = obtain(uri, input.role);
        if (!obtained) return std::unexpected(located(std::move(obtained).error(), expression));
      }
      for (const std::string& output : expression_info(expression.kind()).outputs(expression.body))
        made.insert(resource_key(resolve(output)));
    }
    return {};
  }

  Result<> check_destinations(const Expression& expression) {
    auto local_only = [&](const std::string& uri, std::string_view what) -> Result<> {
      if (!local_path_of(uri))
        return std::unexpected(located(
            Error{ErrorKind::kBadInput, fmt::format("{} {} must be a file on this host", what, uri), {}, {}},
            expression));
      return {};
    };
    if (const auto* e = std::get_if<PopulateExpression>(&expression.body)) return local_only(e->image, "the image");
    if (const auto* e = std::get_if<ImageExpression>(&expression.body)) return local_only(e->path, "the image");
    if (const auto* e = std::get_if<PatchExpression>(&expression.body); e && e->fork.empty() && is_remote_uri(e->target))
      return std::unexpected(located(
          Error{ErrorKind::kBadInput,
                fmt::format("{} is not on this host: give a third field, the URI where the patched copy goes",
                            e->target),
                {}, {}},
          expression));
    return {};
  }

  Result<> obtain(const std::string& uri, Role role) {
    Resource resource{uri, {}, std::nullopt, false};
    if (auto local = local_path_of(uri)) {
      std::error_code ec;
      if (!fs::exists(*local, ec))
        return fail(ErrorKind::kBadInput, "the {} {}: no such file", role_name(role), local->string());
      resource.local = *local;
    } else {
      resource.local = next_work_path("fetched", base_name(uri));
      reporter_.note("fetching " + uri);
      Clock::time_point start = Clock::now();
      FetchOptions fetch;
      fetch.progress = [&](uint64_t done, uint64_t total) { reporter_.progress(done, total); };
      auto fetched = fetch_uri(uri, resource.local, fetch);
      if (!fetched)
        return std::unexpected(
            std::move(fetched).error().with_context(fmt::format("cannot fetch the {}", role_name(role))));
      ++result_.fetched;
      note(fmt::format("fetched {} ({}) in {:.3f} s", uri, format_size(fetched->bytes), seconds_since(start)));
    }
    if (role == Role::kTarget && !is_remote_uri(uri)) {
      // An image or directory on this host is the domain's own filesystem,
      // which the run changes; only canned parts (archives) carry signatures.
      KILN_ASSIGN(TargetKind kind, target_kind_of(resource.local));
      if (kind != TargetKind::kArchive) {
        resources_[resource_key(uri)] = std::move(resource);
        return {};
      }
    }
    KILN_TRY(check_signature(uri, resource.local, role_name(role), "the " + std::string(role_name(role))));
    resources_[resource_key(uri)] = std::move(resource);
    return {};
  }

  // The detached signature URI.asc, or why there is none.
  Result<std::string> signature_text(const std::string& uri) {
    std::string asc = uri + ".asc";
    if (auto local = local_path_of(asc)) {
      std::error_code ec;
      if (!fs::exists(*local, ec)) return fail(ErrorKind::kUntrusted, "{}: no such file", local->string());
      return read_file(*local);
    }
    fs::path target = next_work_path("signatures", base_name(asc));
    FetchOptions fetch;
    fetch.max_bytes = 1 << 20;
    KILN_TRY(fetch_uri(asc, target, fetch));
    return read_file(target);
  }

  Result<> check_signature(const std::string& uri, const fs::path& local, std::string_view role,
                           const std::string& what) {
    if (!keys_) return {};
    auto signature = signature_text(uri);
    if (!signature) {
      if (options_.require_signatures)
        return fail(ErrorKind::kUntrusted,
                    "{} {} has no signature {}.asc ({}); --require-signatures refuses unsigned items", what, uri, uri,
                    signature.error().message);
      note(fmt::format("{} {} is not signed ({})", role, uri, signature.error().message));
      return {};
    }
    auto signer = keys_->verify_detached_file(local, *signature, uri + ".asc");
    if (!signer)
      return std::unexpected(std::move(signer).error().with_context(fmt::format("{} {}", what, uri)));
    std::string line = fmt::format("{}: good signature by {}", uri, signer->describe());
    result_.verified.push_back(line);
    note("verified " + line);
    return {};
  }

  // --- Phase 2: the expressions -------------------------------------------

  Result<std::string> execute(const Expression& expression) {
    return std::visit(Overloaded{
                          [&](const CreateExpression& e) { return create(e); },
                          [&](const ImageExpression& e) { return image(e); },
                          [&](const PopulateExpression& e) { return populate(e); },
                          [&](const ReplaceExpression& e) {
                            return edit(expression, e.path, e.edit, [&]() -> Result<std::string> { return e.text; });
                          },
                          [&](const CopyExpression& e) {
                            return edit(expression, e.path, e.edit, [&]() -> Result<std::string> {
                              KILN_ASSIGN(Resource * source, resource(e.source));
                              return read_file(source->local);
                            });
                          },
                          [&](const PatchExpression& e) { return patch(e); },
                      },
                      expression.body);
  }

  Result<std::string> create(const CreateExpression& e) {
    fs::path dir = resolve(e.directory);
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) return fail(ErrorKind::kBadInput, "{}: no such directory to pack", dir.string());
    std::string uri = resolve(e.uri);
    ArchiveForm form{ArchiveFormat::kCpioNewc, compression_for(uri)};
    fs::path packed;
    if (auto local = local_path_of(uri)) {
      KILN_TRY(make_parent(*local));
      KILN_TRY(write_tree_as_archive(dir, *local, form, 0));
      packed = *local;
    } else {
      packed = next_work_path("made", base_name(uri));
      KILN_TRY(write_tree_as_archive(dir, packed, form, 0));
      KILN_TRY(put_uri(packed, uri));
    }
    resources_[resource_key(uri)] = Resource{uri, packed, std::nullopt, false};
    return fmt::format("packed {} into {} ({})", dir.string(), uri, format_size(fs::file_size(packed, ec)));
  }

  Result<std::string> image(const ImageExpression& e) {
    fs::path path = resolve(e.path);
    KILN_TRY(make_parent(path));
    Ext4Options ext4;
    ext4.size_bytes = e.size_bytes / kBlockSize * kBlockSize;
    ext4.fs_type = e.fs_type;
    ext4.label = e.label;
    ext4.uuid = Uuid::random();
    ext4.hash_seed = Uuid::random();
    ext4.timestamp = mtime_;
    KILN_ASSIGN(AtomicFile file, AtomicFile::create(path));
    {
      KILN_ASSIGN(Ext4Image made, Ext4Image::format(file.temp_path(), ext4));
      KILN_TRY(made.close());
    }
    if (::ftruncate(file.fd(), static_cast<off_t>(e.size_bytes)) != 0)
      return fail_errno("cannot size", file.temp_path().string(), errno);
    KILN_TRY(file.commit());
    resources_[resource_key(path.string())] = Resource{path.string(), path, std::nullopt, false};
    return fmt::format("made {}, {} {} labelled {}", path.string(), format_size(e.size_bytes), e.fs_type, e.label);
  }

  Result<std::string> populate(const PopulateExpression& e) {
    fs::path image = resolve(e.image);
    std::error_code ec;
    if (!fs::is_regular_file(image, ec))
      return fail(ErrorKind::kBadInput, "{}: no such image; make it first with [image {} SIZE LABEL]",
                  image.string(), e.image);
    KILN_ASSIGN(Resource * archive, resource(e.archive));
    fs::path source = archive->local;
    if (archive->edited) {
      // The working copy holds this run's edits: the image gets those.
      source = next_work_path("packed", base_name(archive->uri) + ".tar");
      KILN_TRY(write_tree_as_archive(*archive->tree, source, {}, 0));
    }
    ImportStats stats;
    // On a copy: an archive that fails half-way (a bad entry, a full image)
    // leaves the image as [image] made it.
    KILN_TRY(change_on_copy(image, image, [&](const fs::path& copy) -> Result<> {
      KILN_ASSIGN(TarReader reader, TarReader::open(source));
      KILN_ASSIGN(Ext4Image target, Ext4Image::open(copy));
      ImportOptions import;
      import.progress = [&](uint64_t done, uint64_t total) { reporter_.progress(done, total); };
      KILN_ASSIGN(stats, target.import(reader, import));
      return target.close();
    }));
    return fmt::format("expanded {} into {}: {} entries, {} (mount point {} not used: nothing is mounted)",
                       archive->uri, image.string(), stats.entries, format_size(stats.data_bytes), e.mount_point);
  }

  template <class Content>
  Result<std::string> edit(const Expression& expression, const std::string& path, const ArchiveEdit& edit,
                           Content content_of) {
    KILN_ASSIGN(Resource * archive, resource(edit.archive));
    KILN_TRY(expand(*archive));
    KILN_ASSIGN(auto tree, open_directory_tree(*archive->tree));
    std::string inside = fs::path(path).lexically_normal().string();
    KILN_ASSIGN(NodeSnapshot before, snapshot_node(*tree, inside));
    KILN_ASSIGN(std::string content, content_of());
    KILN_ASSIGN(std::vector<std::string> made_dirs, make_parents(*tree, inside));
    KILN_TRY(tree->write_file(inside, content, TreeAttributes{0644, 0, 0, mtime_}));
    archive->edited = true;
    KILN_ASSIGN(NodeSnapshot after, snapshot_node(*tree, inside));
    std::string summary = fmt::format("wrote {} ({}) in {}", inside, format_size(content.size()), archive->uri);
    if (!edit.patch_uri.empty()) {
      TreePatch patch;
      patch.comments.push_back(fmt::format("{}: {} in {}", expression.describe(), inside, archive->uri));
      for (const std::string& dir : made_dirs) {
        PatchEntry entry;
        entry.path = dir.substr(1);
        entry.new_state = {NodeKind::kDirectory, 0755, 0, 0, {}};
        patch.entries.push_back(std::move(entry));
      }
      if (auto entry = diff_nodes(inside.substr(1), before, after)) patch.entries.push_back(std::move(*entry));
      std::string uri = resolve(edit.patch_uri);
      KILN_TRY(store_text(uri, write_tree_patch(patch)));
      summary += fmt::format("; patch in {}", uri);
    }
    if (!edit.fork_uri.empty()) {
      std::string uri = resolve(edit.fork_uri);
      KILN_TRY(fork(*archive, uri));
      summary += fmt::format("; forked into {}", uri);
    }
    return summary;
  }

  Result<std::string> patch(const PatchExpression& e) {
    KILN_ASSIGN(Resource * patch_file, resource(e.patch));
    KILN_ASSIGN(std::string text, read_file(patch_file->local));
    KILN_ASSIGN(TreePatch patch, parse_tree_patch(text, patch_file->uri));
    KILN_ASSIGN(Resource * target, resource(e.target));
    std::string fork_uri = e.fork.empty() ? "" : resolve(e.fork);
    PatchOutcome outcome;
    if (target->tree) {
      KILN_ASSIGN(auto tree, open_directory_tree(*target->tree));
      KILN_ASSIGN(outcome, apply_patch_to_tree(*tree, patch, patch_file->uri, mtime_));
      target->edited = true;
      if (!fork_uri.empty()) {
        KILN_TRY(fork(*target, fork_uri));
      } else {
        KILN_ASSIGN(ArchiveForm form, archive_form_of(target->local));
        KILN_TRY(write_tree_as_archive(*target->tree, target->local, form, 0));
      }
    } else {
      PatchRequest request{target->local, {}, work_->path(), mtime_};
      std::optional<fs::path> local_fork = fork_uri.empty() ? std::nullopt : local_path_of(fork_uri);
      if (!fork_uri.empty()) {
        request.output = local_fork ? *local_fork : next_work_path("made", base_name(fork_uri));
        KILN_TRY(make_parent(request.output));
      }
      KILN_ASSIGN(outcome, apply_patch_to(patch, patch_file->uri, request));
      if (!fork_uri.empty()) {
        if (!local_fork) KILN_TRY(put_uri(request.output, fork_uri));
        resources_[resource_key(fork_uri)] = Resource{fork_uri, request.output, std::nullopt, false};
      }
    }
    return fmt::format("applied {} to the {} {}: {} created, {} changed, {} removed{}", patch_file->uri,
                       target_kind_name(outcome.kind), target->uri, outcome.created, outcome.changed, outcome.removed,
                       fork_uri.empty() ? " (in place)" : "; forked into " + fork_uri);
  }

  // --- Helpers --------------------------------------------------------------

  // An input gathered in phase 1, or something an earlier expression made.
  Result<Resource*> resource(const std::string& uri) {
    std::string resolved = resolve(uri);
    auto it = resources_.find(resource_key(resolved));
    if (it == resources_.end()) {
      if (auto local = local_path_of(resolved); local && fs::exists(*local)) {
        // An image made earlier in the run, say, that the gathering did not need.
        it = resources_.emplace(resource_key(resolved), Resource{resolved, *local, std::nullopt, false}).first;
      } else {
        return fail(ErrorKind::kBadInput, "{}: no such file, and no earlier expression makes it", resolved);
      }
    }
    return &it->second;
  }

  // Expands an archive into its working copy, once per run.
  Result<> expand(Resource& archive) {
    if (archive.tree) return {};
    KILN_ASSIGN(TargetKind kind, target_kind_of(archive.local));
    if (kind != TargetKind::kArchive)
      return fail(ErrorKind::kBadInput, "{}: a {}, not an archive; [replace] and [copy] edit archives",
                  archive.uri, target_kind_name(kind));
    fs::path dir = next_work_path("trees", base_name(archive.uri));
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) return fail_errno("mkdir", dir.string(), ec.value());
    KILN_TRY(extract_to_tree(archive.local, dir));
    archive.tree = dir;
    note(fmt::format("expanded {} into the working copy {}", archive.uri, dir.string()));
    return {};
  }

  // Packs an archive's working copy, in the archive's own form, at `uri`.
  Result<> fork(const Resource& archive, const std::string& uri) {
    KILN_ASSIGN(ArchiveForm form, archive_form_of(archive.local));
    fs::path packed;
    if (auto local = local_path_of(uri)) {
      KILN_TRY(make_parent(*local));
      packed = *local;
      KILN_TRY(write_tree_as_archive(*archive.tree, packed, form, 0));
    } else {
      packed = next_work_path("made", base_name(uri));
      KILN_TRY(write_tree_as_archive(*archive.tree, packed, form, 0));
      KILN_TRY(put_uri(packed, uri));
    }
    resources_[resource_key(uri)] = Resource{uri, packed, std::nullopt, false};
    return {};
  }

  Result<> store_text(const std::string& uri, std::string_view text) {
    if (auto local = local_path_of(uri)) {
      KILN_TRY(make_parent(*local));
      KILN_TRY(write_file_atomic(*local, text));
      resources_[resource_key(uri)] = Resource{uri, *local, std::nullopt, false};
      return {};
    }
    fs::path made = next_work_path("made", base_name(uri));
    KILN_TRY(write_file_atomic(made, text));
    KILN_TRY(put_uri(made, uri));
    resources_[resource_key(uri)] = Resource{uri, made, std::nullopt, false};
    return {};
  }

  // Creates the missing directories above `path` (0755, root), returning them.
  Result<std::vector<std::string>> make_parents(FileTree& tree, const std::string& path) {
    std::vector<std::string> missing;
    for (fs::path dir = fs::path(path).parent_path(); dir != dir.root_path(); dir = dir.parent_path()) {
      KILN_ASSIGN(std::optional<TreeNode> node, tree.stat(dir.string()));
      if (node) break;
      missing.insert(missing.begin(), dir.string());
    }
    for (const std::string& dir : missing) KILN_TRY(tree.make_directory(dir, TreeAttributes{0755, 0, 0, mtime_}));
    return missing;
  }

  static Result<> make_parent(const fs::path& path) {
    std::error_code ec;
    fs::path parent = fs::absolute(path).parent_path();
    fs::create_directories(parent, ec);
    if (ec) return fail_errno("cannot create the directory", parent.string(), ec.value());
    return {};
  }

  // A relative local path is relative to the container file's directory.
  std::string resolve(const std::string& uri) const {
    auto local = local_path_of(uri);
    if (!local) return uri;
    return (local->is_relative() ? base_ / *local : *local).lexically_normal().string();
  }

  fs::path next_work_path(std::string_view area, const std::string& name) {
    fs::path dir = work_->path() / area;
    std::error_code ec;
    fs::create_directories(dir, ec);
    return dir / fmt::format("{:03}-{}", ++counter_, name);
  }

  Error located(Error error, const Expression& expression) const {
    error.message = fmt::format("{}: {}", expression.describe(), error.message);
    return error;
  }

  void note(std::string line) {
    log_.push_back(fmt::format("{:8.3f}  {}", seconds_since(started_), line));
  }

  Result<> write_log() const {
    std::string text;
    for (const std::string& line : log_) text += line + "\n";
    KILN_TRY(make_parent(options_.log));
    return write_file_atomic(options_.log, text);
  }

  const ContainerOptions& options_;
  Reporter& reporter_;
  Clock::time_point started_ = Clock::now();
  int64_t mtime_ = 0;
  fs::path base_;
  ContainerFile file_;
  std::optional<TempDir> work_;
  std::optional<TrustedKeys> keys_;
  std::map<std::string, Resource> resources_;
  std::vector<std::string> log_;
  ContainerResult result_;
  int counter_ = 0;
};

}  // namespace

Result<ContainerResult> run_container(const ContainerOptions& options, Reporter& reporter) {
  Run run(options, reporter);
  return run.run();
}

}  // namespace kiln
