//! `domicile hash-password`: an argon2 hash of the password on stdin, for `[[users]]`.

use crate::bounded_file;

pub fn run() -> anyhow::Result<()> {
    let password = bounded_file::read_text_from(
        std::io::stdin(),
        crate::limits::PASSWORD_SIZE_MAX_BYTES,
        "standard input",
    )?;
    let hash = crate::auth::hash_password(password.trim_end_matches(['\r', '\n']))
        .map_err(|e| anyhow::anyhow!(e))?;
    println!("{hash}");
    Ok(())
}
