// kiln publish and kiln pull: the vmcast side of kiln.
//   kiln publish DIR --feed SITE --base-url URL --sign-key KEY: a baked image
//     as a signed xvm archive, an item in the site's vmcast feed, and a
//     virt-builder repository entry.
//   kiln pull FEED --keyring KEYS [--item NAME] [-o DIR]: an image from a
//     signed vmcast feed, verified, into a directory `kiln boot` runs.
#include <nlohmann/json.hpp>

#include "base/duration.h"
#include "base/size.h"
#include "base/source_date_epoch.h"
#include "builder/stage_cache.h"
#include "cli/command.h"
#include "feeds/publisher.h"
#include "feeds/puller.h"

namespace kiln::cli {

namespace {

struct PublishFlags {
  std::string image_dir;
  std::string site;
  std::string base_url;
  std::string key;
  std::string gnupg_home;
  std::string passphrase_file;
  std::string channel_title;
  std::string channel_description;
  std::string channel_link;
  std::string language;
  bool no_virt_builder = false;
  std::string osinfo;
  int gzip_level = 6;
  int xz_level = 1;
  unsigned threads = 0;
  std::string valid_for = "30d";
  bool json = false;
};

void print_result(const PublishResult& result, Reporter& reporter) {
  if (reporter.mode() == Reporter::Mode::kJson) {
    reporter.event("result", {{"name", result.name},
                              {"version", result.version},
                              {"xvm", result.xvm.string()},
                              {"size", result.xvm_size},
                              {"sha256", result.xvm_sha256},
                              {"enclosure", result.enclosure_url},
                              {"feed", result.feed.string()},
                              {"index", result.index.string()},
                              {"fingerprint", result.signer},
                              {"valid_until", result.valid_until},
                              {"seconds", result.seconds}});
    return;
  }
  fmt::print("Published {} {} in {:.1f} s, signed by {}\n", result.name, result.version, result.seconds,
             result.signer);
  fmt::print("  {}  {}  sha256:{}\n", result.xvm.string(), format_size(result.xvm_size), result.xvm_sha256);
  fmt::print("  {} (+ .asc), valid until {}\n", result.feed.string(), result.valid_until);
  if (!result.index.empty()) fmt::print("  {} (+ index.asc)\n", result.index.string());
  std::string feed_url = join_url(result.enclosure_url.substr(0, result.enclosure_url.rfind('/')), "vmcast.rss");
  fmt::print("Pull it with:   kiln pull {} --keyring PUBLIC-KEY-FILE --item {}\n", feed_url, result.name);
  if (!result.index.empty())
    fmt::print("virt-builder:   virt-builder --source {} --fingerprint {} {}\n",
               join_url(result.enclosure_url.substr(0, result.enclosure_url.rfind('/')), "index.asc"), result.signer,
               result.name);
}

int run_publish(const PublishFlags& flags) {
  auto epoch = source_date_epoch_from_env();
  if (!epoch) return report_error(epoch.error());
  auto valid_for = parse_duration(flags.valid_for, "--valid-for");
  if (valid_for && valid_for->count() == 0)
    valid_for = fail(ErrorKind::kBadInput, "--valid-for 0: a feed valid for no time is expired when published");
  if (!valid_for) return report_error(valid_for.error());
  PublishOptions options;
  options.image_dir = flags.image_dir;
  options.site_dir = flags.site;
  options.base_url = flags.base_url;
  options.signing = {flags.key, flags.gnupg_home, flags.passphrase_file};
  options.channel_title = flags.channel_title;
  options.channel_description = flags.channel_description;
  options.channel_link = flags.channel_link;
  options.language = flags.language;
  options.virt_builder = !flags.no_virt_builder;
  options.osinfo = flags.osinfo;
  options.gzip_level = flags.gzip_level;
  options.xz_level = flags.xz_level;
  options.threads = flags.threads;
  options.date = *epoch;
  options.valid_for = *valid_for;
  Reporter reporter(Reporter::detect(flags.json));
  auto result = publish(options, reporter);
  return finish(result, [&](const PublishResult& done) { print_result(done, reporter); });
}


void register_publish(CLI::App& root, Registry& registry) {
  auto flags = std::make_shared<PublishFlags>();
  CLI::App* app = root.add_subcommand("publish", "Publish a baked image as a signed vmcast item and virt-builder template");
  app->add_option("image", flags->image_dir, "A bake output directory (with manifest.json)")->required();
  app->add_option("--feed", flags->site, "The site directory: NAME-VERSION.xvm, vmcast.rss, index... go there")
      ->required();
  app->add_option("--base-url", flags->base_url, "The URL at which the site directory is served")->required();
  app->add_option("--sign-key", flags->key, "The OpenPGP key to sign with (key id, fingerprint or e-mail)")
      ->required();
  app->add_option("--gnupg-home", flags->gnupg_home, "The GnuPG home holding the key (default: $GNUPGHOME, ~/.gnupg)");
  app->add_option("--passphrase-file", flags->passphrase_file,
                  "A file whose first line is the key's passphrase (never give it on the command line)");
  app->add_option("--channel-title", flags->channel_title, "The feed's title (default: kept, or \"kiln images\")");
  app->add_option("--channel-description", flags->channel_description, "The feed's description");
  app->add_option("--channel-link", flags->channel_link, "The feed's link (default: the base URL)");
  app->add_option("--language", flags->language, "The feed's language (default: en)");
  app->add_flag("--no-virt-builder", flags->no_virt_builder, "Write no virt-builder index and image");
  app->add_option("--osinfo", flags->osinfo, "The virt-builder osinfo id (default: guessed, e.g. debian12)");
  app->add_option("--gzip-level", flags->gzip_level, "gzip level of the xvm's images, 1-9")
      ->check(CLI::Range(1, 9))
      ->capture_default_str();
  app->add_option("--xz-level", flags->xz_level, "xz level of the virt-builder image, 0-9")
      ->check(CLI::Range(0, 9))
      ->capture_default_str();
  app->add_option("--threads", flags->threads, "Compression threads (default: one per core)");
  app->add_option("--valid-for", flags->valid_for,
                  "How long the feed stays valid, e.g. 30d, 12h; publish again before then (it is signed as the feed's "
                  "kiln:valid-until, and kiln pull refuses the feed after it)")
      ->capture_default_str();
  app->add_flag("--json", flags->json, "Progress and result as JSON lines on stdout");
  app->footer(
      "Writes SITE/NAME-VERSION.xvm (xvm.xml, manifest.txt, manifest.sha256, their detached signatures and the\n"
      "gzip-compressed images), adds or updates the item in SITE/vmcast.rss (older items are kept) and signs it as\n"
      "vmcast.rss.asc, and writes SITE/index, SITE/index.asc (clearsigned) and the xz image for virt-builder.\n"
      "SOURCE_DATE_EPOCH, when set, is the items' pubDate. The staging directory a killed publish left in SITE is\n"
      "removed by the next one.");
  registry.push_back({app, [flags] { return run_publish(*flags); }});
}


struct PullFlags {
  std::string feed;
  std::string keyring;
  std::string item;
  std::string output;
  std::string download_dir;
  bool list = false;
  bool allow_downgrade = false;
  bool allow_expired = false;
  bool no_verify = false;
  std::string max_download;
  std::string download_timeout;
  unsigned threads = 0;
  bool json = false;
};

std::filesystem::path download_dir(const PullFlags& flags) {
  if (flags.download_dir.empty()) return StageCache::default_root() / "downloads";
  return flags.download_dir;
}

// The feed and its checks as the flags ask, with the download limits of the
// environment overridden by --max-download and --download-timeout.
Result<FeedSource> feed_source(const PullFlags& flags) {
  FeedSource source{flags.feed, flags.keyring, flags.no_verify, flags.allow_expired, flags.allow_downgrade};
  KILN_ASSIGN(source.limits, download_limits_from_env());
  if (!flags.max_download.empty()) {
    auto size = parse_size(flags.max_download);
    if (!size) return std::unexpected(std::move(size).error().with_context("--max-download"));
    source.limits->max_bytes = *size;
  }
  if (!flags.download_timeout.empty()) {
    KILN_ASSIGN(source.limits->deadline, parse_duration(flags.download_timeout, "--download-timeout"));
  }
  if (source.limits->max_bytes == 0 || source.limits->deadline.count() == 0)
    return fail(ErrorKind::kBadInput, "--max-download and --download-timeout must be more than 0");
  return source;
}

Result<FetchedFeed> list_feed(const PullFlags& flags, Reporter& reporter) {
  KILN_ASSIGN(FeedSource source, feed_source(flags));
  KILN_ASSIGN(std::optional<TrustedKeys> keys, trusted_keys(source, reporter));
  return fetch_feed(source, keys ? &*keys : nullptr, download_dir(flags), reporter);
}

int run_list(const PullFlags& flags) {
  Reporter reporter(Reporter::detect(flags.json));
  auto fetched = list_feed(flags, reporter);
  if (!fetched) return report_error(fetched.error());
  std::vector<const VmcastItem*> items = pullable_items(fetched->feed);
  if (reporter.mode() == Reporter::Mode::kJson) {
    nlohmann::json list = nlohmann::json::array();
    for (const VmcastItem* item : items)
      list.push_back({{"name", item->name()},
                      {"version", item->image_version},
                      {"title", item->title},
                      {"date", item->pub_date},
                      {"url", item->enclosure->url},
                      {"length", item->enclosure->length ? nlohmann::json(*item->enclosure->length) : nlohmann::json()},
                      {"sha256", item->sha256}});
    reporter.event("items", {{"feed", flags.feed},
                             {"title", fetched->feed.channel.title},
                             {"signed_by", fetched->signer ? fetched->signer->fingerprint : ""},
                             {"items", list}});
    return 0;
  }
  fmt::print("{} ({})\n", fetched->feed.channel.title, fetched->signer ? "signed by " + fetched->signer->describe()
                                                                          : "NOT verified");
  fmt::print("{:<28} {:<12} {:>10}  {}\n", "NAME", "VERSION", "SIZE", "PUBLISHED");
  for (const VmcastItem* item : items)
    fmt::print("{:<28} {:<12} {:>10}  {}\n", item->name(), item->image_version.empty() ? "-" : item->image_version,
               item->enclosure->length ? format_size(*item->enclosure->length) : "?", item->pub_date);
  return 0;
}

int run_pull(const PullFlags& flags) {
  if (flags.list) return run_list(flags);
  auto source = feed_source(flags);
  if (!source) return report_error(source.error());
  PullOptions options;
  options.source = std::move(*source);
  options.item = flags.item;
  options.output_dir = flags.output;
  options.download_dir = download_dir(flags);
  options.threads = flags.threads;
  Reporter reporter(Reporter::detect(flags.json));
  auto result = pull(options, reporter);
  return finish(result, [&](const PullResult& done) {
    if (reporter.mode() == Reporter::Mode::kJson) {
      reporter.event("result", {{"name", done.name},
                                {"version", done.version},
                                {"output", done.output_dir.string()},
                                {"enclosure", done.enclosure_url},
                                {"bytes", done.downloaded},
                                {"resumed", done.resumed},
                                {"signed_by", done.signer ? done.signer->fingerprint : ""},
                                {"files", done.files},
                                {"seconds", done.seconds}});
      return;
    }
    fmt::print("Pulled {} {} into {} in {:.1f} s ({}{}), {}\n", done.name, done.version, done.output_dir.string(),
               done.seconds, format_size(done.downloaded), done.resumed ? ", resumed" : "",
               done.signer ? "signed by " + done.signer->describe() : "NOT verified");
    for (const std::string& file : done.files) fmt::print("  {}\n", file);
  });
}


void register_pull(CLI::App& root, Registry& registry) {
  auto flags = std::make_shared<PullFlags>();
  CLI::App* app = root.add_subcommand("pull", "Fetch an image from a signed vmcast feed, verified, as a bake output");
  app->add_option("feed", flags->feed, "The feed's URI (http, https, ftp, file) or path")->required();
  app->add_option("--keyring", flags->keyring,
                  "The trusted public keys (`gpg --export KEYID > FILE`); only they can vouch for the feed");
  app->add_option("--item", flags->item, "The image to pull (its name); needed when the feed offers several");
  app->add_option("-o,--output", flags->output, "Output directory (default: out/NAME); replaced only on success");
  app->add_flag("--list", flags->list, "List the feed's images instead of pulling one");
  app->add_flag("--allow-downgrade", flags->allow_downgrade,
                "Accept an older version than the output directory holds or than was pulled from this feed before, "
                "and a feed older than one accepted before (a rollback), with a warning");
  app->add_flag("--allow-expired", flags->allow_expired, "Accept a feed past its valid-until, with a warning");
  app->add_option("--max-download", flags->max_download,
                  "The most to download when the feed gives no enclosure length, e.g. 8G (default: KILN_MAX_DOWNLOAD, "
                  "else 32G)");
  app->add_option("--download-timeout", flags->download_timeout,
                  "The deadline of each download, e.g. 2h, 90s (default: KILN_DOWNLOAD_TIMEOUT, else 6h)");
  app->add_flag("--no-verify", flags->no_verify, "Accept an unsigned or untrusted feed and archive (checksums only)");
  app->add_option("--download-dir", flags->download_dir,
                  "Where partial downloads wait to be resumed (default: the kiln cache's downloads/)");
  app->add_option("--threads", flags->threads, "Verification and expansion threads (default: one per core)");
  app->add_flag("--json", flags->json, "Progress and result as JSON lines on stdout");
  app->footer(
      "Checks, in order: the feed's signature (FEED.asc) against --keyring, the item's enclosure length and sha256,\n"
      "the archive's signatures (signature.asc, mf-signature.asc, manifest.sha256.asc), every manifest sum; then\n"
      "expands the images (each held to its declared size) beside DIR and swaps DIR in. Exit code 5 when anything\n"
      "does not verify; DIR is then left as it was. An expired feed, or one older than a feed or image already\n"
      "accepted from the same URI and key (kept in $XDG_STATE_HOME/kiln/pulled-feeds.json), does not verify.\n"
      "Downloads stop under 1 KiB/s for KILN_DOWNLOAD_STALL (default 60s).");
  registry.push_back({app, [flags] { return run_pull(*flags); }});
}

}  // namespace

void register_feed_commands(CLI::App& root, Registry& registry) {
  register_publish(root, registry);
  register_pull(root, registry);
}

}  // namespace kiln::cli
