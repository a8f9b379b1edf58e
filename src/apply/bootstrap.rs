//! Putting the installer on a host, the first thing the distribute phase
//! does on a host that lacks it: everything after runs through it. The host's
//! own `sh`, `tar` and `sha256sum` do it, so that nothing of sealrs has to be
//! there first.

use std::time::Instant;

use oci_spec::image::MediaType;

use super::distribute::{fetch_with, unreached, Fetched};
use super::image::{host_layer, AppliedImage};
use super::ApplyError;
use crate::progress::text::size;
use crate::progress::Progress;
use crate::store::Store;
use crate::transport::{direct, Transport};

/// What putting the installer on a host came to.
pub(super) struct Bootstrap {
    /// Bytes sent.
    pub(super) sent: u64,
    /// The host could not fetch from this machine (and was told why).
    pub(super) unreached: bool,
}

/// Puts the image's installer on the host: its layer, fetched from `server`
/// where the host can reach it (else sent over SSH), is unpacked by the
/// host's tar (and gzip, for older images) into its layer directory only if
/// the host's `sha256sum` says it checks out. One command: on a fresh connection each
/// round trip counts.
pub(super) fn bootstrap_installer(
    store: &Store,
    transport: &dyn Transport,
    image: &AppliedImage,
    server: Option<&direct::Server>,
    progress: &dyn Progress,
) -> Result<Bootstrap, ApplyError> {
    let Some(layer) = &image.installer else {
        return Ok(Bootstrap {
            sent: 0,
            unreached: false,
        });
    };
    let fail = ApplyError::transport(transport.address());
    let started = Instant::now();
    let gzip = if *layer.media_type() == MediaType::ImageLayerGzip {
        "1"
    } else {
        "0"
    };
    let argv: Vec<String> = [
        "sh",
        "-c",
        BOOTSTRAP_SCRIPT,
        "sealrs",
        layer.digest().digest(),
        &host_layer(layer),
        gzip,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let blob = store.blob_path(layer.digest());
    // Over SSH, a stream into a pipeline costs sshd and the host far more
    // than the same bytes over TCP; so the host fetches the layer from our
    // server where it can (see `direct`), and over SSH where it cannot.
    let mut fetched = None;
    let mut unreachable = false;
    if let (Some(server), Some(ip)) = (server, transport.data_address()) {
        let offer = server.offer_plain(vec![blob.clone()]);
        let fetch = server.ticket(&offer, ip).map(|ticket| {
            let mut fetch = argv.clone();
            fetch.push(ticket.address.ip().to_string());
            fetch.push(ticket.address.port().to_string());
            (fetch, format!("{}\n", ticket.token.expose()))
        });
        match fetch_with(transport, &offer, ip, fetch, &|_| {})? {
            Fetched::Done(output, serve_error) => fetched = Some((output, serve_error)),
            Fetched::Unreached(why) => {
                unreached(progress, transport, &why);
                unreachable = true;
            }
        }
    }
    let route = if fetched.is_some() {
        "directly"
    } else {
        "over SSH"
    };
    let (output, serve_error) = match fetched {
        Some(done) => done,
        None => (
            transport
                .run_with_files(&argv, &[blob], &|_| {})
                .map_err(&fail)?,
            None,
        ),
    };
    if !output.success() {
        return Err(ApplyError::command(
            transport.address(),
            format!("sh -c <the installer bootstrap> {}", host_layer(layer)),
            &output,
            10,
        )
        .served_by_us(serve_error));
    }
    progress.message(&format!(
        "{}: installer in place ({}, {route}) in {:.1}s",
        transport.address(),
        size(layer.size()),
        started.elapsed().as_secs_f64()
    ));
    Ok(Bootstrap {
        sent: layer.size(),
        unreached: unreachable,
    })
}

/// `sh -c BOOTSTRAP_SCRIPT sealrs HEX DIR GZ [ADDRESS PORT]`: puts the
/// installer layer whose sha256 is HEX in DIR, unpacked into a temp directory
/// renamed to DIR only if the blob checks out, so that DIR exists only
/// complete and checked. GZ is `1` for a gzip layer (images built before the
/// layer was a plain tar), else `0`.
/// - With ADDRESS and PORT, the host fetches the blob from our server with
///   bash, showing the token that bash reads from stdin (never an argument:
///   `/proc/*/cmdline` is readable by every user); a host without bash, or
///   that cannot connect within 3 s, exits 75 having claimed nothing.
/// - Without them, the blob comes on stdin and is unpacked as it arrives.
///   Whatever happens to the unpacking, the rest of stdin is read, so that
///   the hash, not a broken pipe, has the last word on a corrupt blob.
///
/// What a kill or power cut leaves (`DIR.incoming-PID*`) the installer's
/// next unpack removes (`installer::unpack`'s garbage rule).
const BOOTSTRAP_SCRIPT: &str = r#"set -eu
hex=$1 dir=$2 gz=$3
shift 3
mkdir -p "${dir%/*}"
tmp=$dir.incoming-$$
trap 'rm -rf "$tmp" "$tmp.blob" "$tmp.failed"' EXIT
mkdir "$tmp"
untar() { if [ "$gz" = 1 ]; then gzip -dc | tar -xf - -C "$tmp"; else tar -xf - -C "$tmp"; fi; }
if [ $# -gt 0 ]; then
  command -v bash >/dev/null || { echo "no bash to fetch with" >&2; exit 75; }
  # bash reads the token from stdin itself and writes it with its builtin
  # printf: it is in no argv, where any user of the host would read it.
  bash -c 'IFS= read -r token
    (sleep 3; kill $$) </dev/null >/dev/null 2>&1 & w=$!
    exec 3<>"/dev/tcp/$1/$2" || exit 75
    kill $w
    printf "%s\n" "$token" >&3
    exec cat <&3' fetch "$1" "$2" >"$tmp.blob" || exit 75
  untar <"$tmp.blob" || echo failed >"$tmp.failed"
else
  tee "$tmp.blob" | {
    untar || echo failed >"$tmp.failed"
    cat >/dev/null
  }
fi
sum=$(sha256sum <"$tmp.blob")
if [ "${sum%% *}" != "$hex" ]; then
  echo "the installer layer's sha256 is ${sum%% *}, not $hex" >&2
  exit 1
fi
if [ -e "$tmp.failed" ]; then
  echo "cannot unpack the installer layer" >&2
  exit 1
fi
# Root's alone, as the installer's layer directories; durable before named
# (as the installer's unpack): the files, then the name.
chmod 700 "$tmp"
sync -f "$tmp" 2>/dev/null || sync
rm -rf "$dir"
mv "$tmp" "$dir"
sync "${dir%/*}" 2>/dev/null || sync"#;

#[cfg(test)]
mod tests {
    use super::BOOTSTRAP_SCRIPT;
    use std::io::Write;
    use std::path::Path;
    use std::process::{Command, Output, Stdio};

    /// A tar with `opt/sealrs/sealrs`, as the installer layer is (gzip, as
    /// images built before had it, with `gzip`).
    fn installer_layer(content: &[u8], gzip: bool) -> Vec<u8> {
        let mut tar = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_size(content.len() as u64);
        header.set_mode(0o755);
        header.set_cksum();
        tar.append_data(&mut header, "opt/sealrs/sealrs", content)
            .unwrap();
        let plain = tar.into_inner().unwrap();
        if !gzip {
            return plain;
        }
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&plain).unwrap();
        gz.finish().unwrap()
    }

    /// Runs the bootstrap here, as a host's `sh` would, `blob` on stdin.
    fn bootstrap(blob: &[u8], hex: &str, dir: &Path, gzip: bool) -> Output {
        bootstrap_from(blob, hex, dir, gzip, &[])
    }

    /// The bootstrap with more arguments (where to fetch from).
    fn bootstrap_from(blob: &[u8], hex: &str, dir: &Path, gzip: bool, more: &[String]) -> Output {
        bootstrap_with_path(blob, hex, dir, gzip, more, None)
    }

    /// [`bootstrap_from`] with `path` first in `PATH`.
    fn bootstrap_with_path(
        blob: &[u8],
        hex: &str,
        dir: &Path,
        gzip: bool,
        more: &[String],
        path: Option<&Path>,
    ) -> Output {
        let mut command = Command::new("sh");
        if let Some(path) = path {
            let system = std::env::var("PATH").unwrap_or_default();
            command.env("PATH", format!("{}:{system}", path.display()));
        }
        let mut child = command
            .args(["-c", BOOTSTRAP_SCRIPT, "sealrs", hex])
            .arg(dir)
            .arg(if gzip { "1" } else { "0" })
            .args(more)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(blob).unwrap();
        child.wait_with_output().unwrap()
    }

    /// The bootstrap succeeded and left the installer `binary` in `dir`.
    fn installed(out: &Output, dir: &Path, binary: &[u8]) {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            std::fs::read(dir.join("opt/sealrs/sealrs")).unwrap(),
            binary
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o7777, 0o700, "the layer directory is root's alone");
    }

    fn sha256_hex(bytes: &[u8]) -> String {
        crate::digest::sha256_digest(bytes).digest().to_string()
    }

    #[test]
    fn the_installer_bootstrap_keeps_only_a_layer_whose_sha256_matches() {
        // Plain tar as built now, and gzip as built before.
        for gzip in [false, true] {
            let tmp = tempfile::tempdir().unwrap();
            let layers = tmp.path().join("layers");
            let binary: Vec<u8> = (0..400_000u32).map(|i| (i * 7 % 251) as u8).collect();
            let blob = installer_layer(&binary, gzip);
            let hex = sha256_hex(&blob);

            let mut corrupt = blob.clone();
            corrupt[blob.len() / 2] ^= 0xff;
            let not_a_layer = b"neither a tar nor a gzip stream".to_vec();
            for (bad, expected_hex, says) in [
                (
                    &corrupt[..],
                    hex.as_str(),
                    "the installer layer's sha256 is",
                ),
                (
                    &blob[..blob.len() / 2],
                    &hex,
                    "the installer layer's sha256 is",
                ),
                (
                    &not_a_layer[..],
                    &sha256_hex(&not_a_layer),
                    "cannot unpack the installer layer",
                ),
            ] {
                let out = bootstrap(bad, expected_hex, &layers.join("bad"), gzip);
                let stderr = String::from_utf8_lossy(&out.stderr);
                assert!(!out.status.success(), "gzip {gzip}: {stderr}");
                assert!(stderr.contains(says), "gzip {gzip}: {stderr}");
                // Neither the directory nor anything of the attempt is left.
                assert_eq!(std::fs::read_dir(&layers).unwrap().count(), 0);
            }

            let dir = layers.join(&hex);
            installed(&bootstrap(&blob, &hex, &dir, gzip), &dir, &binary);
            assert_eq!(std::fs::read_dir(&layers).unwrap().count(), 1);
        }
    }

    #[test]
    fn the_installer_bootstrap_fetches_from_our_server_or_says_it_cannot() {
        use crate::transport::direct::Server;
        let tmp = tempfile::tempdir().unwrap();
        let layers = tmp.path().join("layers");
        let binary = b"#!/bin/sh\necho installer\n".to_vec();
        let blob = installer_layer(&binary, false);
        let hex = sha256_hex(&blob);
        let file = tmp.path().join("blob");
        std::fs::write(&file, &blob).unwrap();
        let here = std::net::IpAddr::from([127, 0, 0, 1]);
        let server = Server::start(&[here]).unwrap();

        let offer = server.offer_plain(vec![file]);
        let ticket = server.ticket(&offer, here).unwrap();
        let at = [
            ticket.address.ip().to_string(),
            ticket.address.port().to_string(),
        ];
        let line = format!("{}\n", ticket.token.expose());
        let dir = layers.join(&hex);
        // A `bash` first in PATH that records its argv, then is bash.
        let bin = tmp.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let argv_log = tmp.path().join("bash-argv");
        let spy = format!(
            "#!/bin/sh\nprintf '%s\\n' \"$@\" >>'{}'\nexec /bin/bash \"$@\"\n",
            argv_log.display()
        );
        std::fs::write(bin.join("bash"), spy).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(bin.join("bash"), std::fs::Permissions::from_mode(0o755)).unwrap();
        installed(
            &bootstrap_with_path(line.as_bytes(), &hex, &dir, false, &at, Some(&bin)),
            &dir,
            &binary,
        );
        assert!(offer.claimed());
        let argv = std::fs::read_to_string(&argv_log).unwrap();
        assert!(argv.contains("/dev/tcp/"), "bash fetched: {argv}");
        assert!(
            !argv.contains(ticket.token.expose()),
            "the token is in bash's argv: {argv}"
        );

        // The token is spent: the server closes on it, the hash says so.
        let again = bootstrap_from(line.as_bytes(), &hex, &layers.join("again"), false, &at);
        assert!(String::from_utf8_lossy(&again.stderr).contains("sha256 is"));
        // Nobody listening: exit 75, nothing left behind.
        drop(server);
        let out = bootstrap_from(line.as_bytes(), &hex, &layers.join("x"), false, &at);
        assert_eq!(
            out.status.code(),
            Some(75),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(std::fs::read_dir(&layers).unwrap().count(), 1);
    }
}
