// kiln container, kiln diff and kiln patch: domain containers and kiln's
// patches.
//   kiln container FILE --stripped CONFIG: runs a domain container file's
//     expressions and writes its Xen lines for `kiln boot CONFIG`.
//   kiln diff OLD NEW -o FILE.patch: the patch between two directories,
//     images or archives.
//   kiln patch TARGET FILE.patch [-o FORKED]: applies a patch to a
//     directory, image or archive, all or nothing.
#include <ctime>

#include <nlohmann/json.hpp>

#include "base/files.h"
#include "base/source_date_epoch.h"
#include "fetch/uri_fetch.h"
#include "container/container_runner.h"
#include "container/tree_patching.h"
#include "cli/command.h"
#include "crypto/openpgp.h"

namespace kiln::cli {
namespace {

namespace fs = std::filesystem;

fs::path scratch_parent() {
  const char* tmp = std::getenv("TMPDIR");
  return tmp && *tmp ? fs::path(tmp) : fs::path("/var/tmp");
}

// SOURCE_DATE_EPOCH when set, else now: the time of the files kiln writes.
Result<int64_t> write_time() {
  KILN_ASSIGN(std::optional<int64_t> epoch, source_date_epoch_from_env());
  return epoch ? *epoch : static_cast<int64_t>(std::time(nullptr));
}

// --- kiln container ----------------------------------------------------------

struct ContainerFlags {
  std::string file;
  std::string stripped;
  std::string log;
  std::string dir;
  std::string keyring;
  bool require_signatures = false;
  bool json = false;
};

int run_container_command(const ContainerFlags& flags) {
  auto mtime = write_time();
  if (!mtime) return report_error(mtime.error());
  ContainerOptions options{flags.file, flags.stripped, flags.log, flags.dir, flags.keyring, flags.require_signatures,
                           *mtime};
  Reporter reporter(Reporter::detect(flags.json));
  auto result = run_container(options, reporter);
  return finish(result, [&](const ContainerResult& done) {
    if (reporter.mode() == Reporter::Mode::kJson) {
      nlohmann::json steps = nlohmann::json::array();
      for (const ContainerStep& step : done.steps)
        steps.push_back({{"expression", step.expression}, {"summary", step.summary}, {"seconds", step.seconds}});
      reporter.event("result", {{"domain", done.domain.name},
                                {"stripped", flags.stripped},
                                {"steps", steps},
                                {"fetched", done.fetched},
                                {"verified", done.verified},
                                {"seconds", done.seconds}});
      return;
    }
    fmt::print("Ran {} ({} expressions) in {:.2f} s\n", flags.file, done.steps.size(), done.seconds);
    for (const ContainerStep& step : done.steps) fmt::print("  {}: {}\n", step.expression, step.summary);
    for (const std::string& line : done.verified) fmt::print("  verified {}\n", line);
    if (!flags.stripped.empty()) fmt::print("Boot it with:  kiln boot {}\n", flags.stripped);
  });
}

void register_container_command(CLI::App& root, Registry& registry) {
  auto flags = std::make_shared<ContainerFlags>();
  CLI::App* app = root.add_subcommand("container", "Prepare a domain's filesystems from a domain container file");
  app->add_option("file", flags->file, "Domain container file: a Xen config with [expressions]; see `kiln help "
                                       "container`")
      ->required();
  app->add_option("--stripped", flags->stripped, "Write the file's Xen config lines here, for `kiln boot`");
  app->add_option("--log", flags->log, "Record what each expression did (and a failure) in this file");
  app->add_option("--dir", flags->dir, "Working copies go under this directory (default: $TMPDIR, else /var/tmp)");
  app->add_option("--keyring", flags->keyring,
                  "Trusted OpenPGP keys: check the URI.asc signatures that exist, and the container file's");
  app->add_flag("--require-signatures", flags->require_signatures,
                "Refuse any archive, patch, source or container file without a good signature by a --keyring "
                "key; all are checked before anything changes");
  app->add_flag("--json", flags->json, "Progress and result as JSON lines on stdout");
  app->footer("See `kiln help container` (docs/container.md) for the expressions and docs/patch-format.md for\n"
              "the patches [patch] applies.");
  registry.push_back({app, [flags] { return run_container_command(*flags); }});
}

// --- kiln diff ---------------------------------------------------------------

struct DiffFlags {
  std::string old_path;
  std::string new_path;
  std::string output;
  bool json = false;
};

int run_diff(const DiffFlags& flags) {
  auto patch = diff_paths(flags.old_path, flags.new_path, scratch_parent());
  if (!patch) return report_error(patch.error());
  std::string text = write_tree_patch(*patch);
  if (flags.output.empty()) {
    fmt::print("{}", text);
    return 0;
  }
  if (auto written = write_file_atomic(flags.output, text); !written) return report_error(written.error());
  if (flags.json) {
    fmt::print("{}\n", nlohmann::json{{"event", "result"},
                                      {"patch", flags.output},
                                      {"entries", patch->entries.size()},
                                      {"bytes", text.size()}}
                           .dump());
  } else {
    fmt::print("Wrote {} entries to {}\n", patch->entries.size(), flags.output);
  }
  return 0;
}

void register_diff(CLI::App& root, Registry& registry) {
  auto flags = std::make_shared<DiffFlags>();
  CLI::App* app = root.add_subcommand("diff", "Make a kiln patch between two directories, images or archives");
  app->add_option("old", flags->old_path, "The original: a directory, an ext2/3/4 image or an archive")->required();
  app->add_option("new", flags->new_path, "The modified one, of any of those kinds")->required();
  app->add_option("-o,--output", flags->output, "Write the patch here (default: standard output)");
  app->add_flag("--json", flags->json, "The result as a JSON line");
  app->footer("The format is kiln's own (docs/patch-format.md): unified diffs for text, base64 for binary and\n"
              "new files, and modes, owners, symlinks, directories and deletions. Apply it with `kiln patch`.");
  registry.push_back({app, [flags] { return run_diff(*flags); }});
}

// --- kiln patch --------------------------------------------------------------

struct PatchFlags {
  std::string target;
  std::string patch;
  std::string output;
  std::string keyring;
  bool json = false;
};

// The patch's text, fetched when it is a URI, and checked against the
// keyring when one is given.
Result<std::string> read_patch(const PatchFlags& flags, const fs::path& scratch) {
  fs::path local = local_path_of(flags.patch).value_or(fs::path());
  if (local.empty()) {
    local = scratch / "patch";
    KILN_TRY(fetch_uri(flags.patch, local));
  }
  KILN_ASSIGN(std::string text, read_file(local));
  if (flags.keyring.empty()) return text;
  KILN_ASSIGN(TrustedKeys keys, TrustedKeys::load(flags.keyring));
  std::string asc_uri = flags.patch + ".asc";
  fs::path asc = local_path_of(asc_uri).value_or(scratch / "patch.asc");
  if (!local_path_of(asc_uri)) KILN_TRY(fetch_uri(asc_uri, asc));
  auto signature = read_file(asc);
  if (!signature)
    return fail(ErrorKind::kUntrusted, "{}: no signature {} ({}); --keyring asks for a signed patch", flags.patch,
                asc_uri, signature.error().message);
  KILN_TRY(keys.verify_detached(text, *signature, flags.patch, asc_uri));
  return text;
}

int run_patch(const PatchFlags& flags) {
  auto mtime = write_time();
  if (!mtime) return report_error(mtime.error());
  auto scratch = TempDir::create(scratch_parent(), "kiln-patch");
  if (!scratch) return report_error(scratch.error());
  auto text = read_patch(flags, scratch->path());
  if (!text) return report_error(text.error());
  auto patch = parse_tree_patch(*text, flags.patch);
  if (!patch) return report_error(patch.error());
  PatchRequest request{flags.target, flags.output, scratch->path(), *mtime};
  auto outcome = apply_patch_to(*patch, flags.patch, request);
  return finish(outcome, [&](const PatchOutcome& done) {
    std::string result = flags.output.empty() ? flags.target : flags.output;
    if (flags.json) {
      fmt::print("{}\n", nlohmann::json{{"event", "result"},
                                        {"target", flags.target},
                                        {"kind", target_kind_name(done.kind)},
                                        {"output", result},
                                        {"created", done.created},
                                        {"changed", done.changed},
                                        {"removed", done.removed}}
                             .dump());
      return;
    }
    fmt::print("Patched the {} {}: {} created, {} changed, {} removed{}\n", target_kind_name(done.kind),
               flags.target, done.created, done.changed, done.removed,
               flags.output.empty() ? "" : "; the result is " + flags.output);
  });
}

void register_patch(CLI::App& root, Registry& registry) {
  auto flags = std::make_shared<PatchFlags>();
  CLI::App* app = root.add_subcommand("patch", "Apply a kiln patch to a directory, image or archive");
  app->add_option("target", flags->target, "A directory, an ext2/3/4 image or an archive")->required();
  app->add_option("patch", flags->patch, "The patch: a file or a file://, http(s):// or ftp:// URI")->required();
  app->add_option("-o,--output", flags->output,
                  "Write the patched copy here and leave the target as it was (images and archives)");
  app->add_option("--keyring", flags->keyring, "Require a good signature PATCH.asc by one of these keys");
  app->add_flag("--json", flags->json, "The result as a JSON line");
  app->footer("All or nothing: every entry is checked first, and a patch that does not apply changes nothing;\n"
              "the error lists each rejected entry and hunk with its line in the patch. Images are changed\n"
              "through libext2fs, never mounted; archives are rewritten in their own format and compression.");
  registry.push_back({app, [flags] { return run_patch(*flags); }});
}

}  // namespace

void register_container_commands(CLI::App& root, Registry& registry) {
  register_container_command(root, registry);
  register_diff(root, registry);
  register_patch(root, registry);
}

}  // namespace kiln::cli
