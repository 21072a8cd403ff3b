//! Windows leaf of the install code: windowless commands and console-code-page decoding. Same signatures
//! as `unix.rs`.

use std::os::windows::process::CommandExt;
use std::process::Command;

use windows_sys::Win32::Globalization::{GetOEMCP, MultiByteToWideChar};
use windows_sys::Win32::System::Console::GetConsoleOutputCP;
use windows_sys::Win32::System::Threading::CREATE_NO_WINDOW;

/// `schtasks` and friends are console programs: started from the windowless `heraldw.exe` they would
/// each open a console window; `CREATE_NO_WINDOW` prevents it.
pub(crate) fn no_window(command: &mut Command) {
    command.creation_flags(CREATE_NO_WINDOW);
}

/// Console programs write in the console's output code page (the OEM code page when there is no console):
/// decode with it, lossily. Valid UTF-8 (code page 65001, or plain ASCII) is taken as it is.
pub(crate) fn decode_output(bytes: &[u8]) -> String {
    if let Ok(text) = std::str::from_utf8(bytes) {
        return text.to_owned();
    }
    // SAFETY: no preconditions; 0 means "no console".
    let console = unsafe { GetConsoleOutputCP() };
    let code_page = if console == 0 {
        // SAFETY: no preconditions.
        unsafe { GetOEMCP() }
    } else {
        console
    };
    to_wide(code_page, 0, bytes).map_or_else(
        || String::from_utf8_lossy(bytes).into_owned(),
        |wide| String::from_utf16_lossy(&wide),
    )
}

/// `MultiByteToWideChar`: `None` when the conversion fails or the input is too long for the API.
fn to_wide(code_page: u32, flags: u32, bytes: &[u8]) -> Option<Vec<u16>> {
    if bytes.is_empty() {
        return Some(Vec::new());
    }
    let len = i32::try_from(bytes.len()).ok()?;
    // SAFETY: `bytes` is valid for `len` bytes; a null output buffer with size 0 asks for the length.
    let needed =
        unsafe { MultiByteToWideChar(code_page, flags, bytes.as_ptr(), len, std::ptr::null_mut(), 0) };
    let capacity = usize::try_from(needed).ok().filter(|&n| n > 0)?;
    let mut wide = vec![0u16; capacity];
    // SAFETY: `wide` has room for `needed` UTF-16 units, as the first call reported.
    let written =
        unsafe { MultiByteToWideChar(code_page, flags, bytes.as_ptr(), len, wide.as_mut_ptr(), needed) };
    wide.truncate(usize::try_from(written).ok().filter(|&n| n > 0)?);
    Some(wide)
}

/// Windows has no Unix user ids.
pub(crate) fn effective_uid() -> Option<u32> {
    None
}

pub(crate) fn real_uid() -> Option<u32> {
    None
}

/// Windows has no permission bits; the files inherit the folder's ACL.
pub(crate) fn set_mode(_path: &std::path::Path, _mode: u32) -> std::io::Result<()> {
    Ok(())
}

/// Windows has no account database of this kind here (the Windows Service runs as LocalSystem):
/// nothing is judged.
pub(crate) fn account(_name: &str) -> crate::access::AccountLookup {
    crate::access::AccountLookup::Unknown
}

pub(crate) fn dir_facts(_path: &std::path::Path) -> Option<crate::access::DirFacts> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_output_is_decoded_lossily() {
        assert_eq!(decode_output(b"plain"), "plain");
        assert!(!decode_output(&[0x82, 0xff, b'x']).is_empty());
    }
}
