//! Windows leaf of the install code: windowless commands, console-code-page decoding and the OEM code
//! page's exact conversions. Same signatures as `unix.rs`.

use std::os::windows::process::CommandExt;
use std::process::Command;

use windows_sys::Win32::Globalization::{
    CP_UTF8, GetOEMCP, MB_ERR_INVALID_CHARS, MultiByteToWideChar, WC_NO_BEST_FIT_CHARS, WideCharToMultiByte,
};
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

/// `MultiByteToWideChar`: `None` when the conversion fails (with `MB_ERR_INVALID_CHARS`: on a byte that
/// is not valid in `code_page`) or the input is too long for the API.
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

/// `text` in the OEM code page, only when every character has an exact form there: no best-fit
/// mapping (`é` must not become `e`), no default character, and it reads back to `text`.
pub(crate) fn oem_encode(text: &str) -> Option<Vec<u8>> {
    // SAFETY: no preconditions.
    let code_page = unsafe { GetOEMCP() };
    if code_page == CP_UTF8 {
        return Some(text.as_bytes().to_vec());
    }
    let wide: Vec<u16> = text.encode_utf16().collect();
    if wide.is_empty() {
        return Some(Vec::new());
    }
    let len = i32::try_from(wide.len()).ok()?;
    let mut defaulted = 0;
    // SAFETY: `wide` is valid for `len` units; a null output buffer with size 0 asks for the length;
    // `defaulted` outlives the call.
    let needed = unsafe {
        WideCharToMultiByte(
            code_page,
            WC_NO_BEST_FIT_CHARS,
            wide.as_ptr(),
            len,
            std::ptr::null_mut(),
            0,
            std::ptr::null(),
            &mut defaulted,
        )
    };
    let capacity = usize::try_from(needed).ok().filter(|&n| n > 0)?;
    let mut bytes = vec![0u8; capacity];
    // SAFETY: `bytes` has room for `needed` bytes, as the first call reported; `defaulted` outlives it.
    let written = unsafe {
        WideCharToMultiByte(
            code_page,
            WC_NO_BEST_FIT_CHARS,
            wide.as_ptr(),
            len,
            bytes.as_mut_ptr(),
            needed,
            std::ptr::null(),
            &mut defaulted,
        )
    };
    bytes.truncate(usize::try_from(written).ok().filter(|&n| n > 0)?);
    let exact = defaulted == 0 && oem_decode(&bytes).as_deref() == Some(text);
    exact.then_some(bytes)
}

/// `bytes` read in the OEM code page; `None` when a byte is not valid there.
pub(crate) fn oem_decode(bytes: &[u8]) -> Option<String> {
    // SAFETY: no preconditions.
    let code_page = unsafe { GetOEMCP() };
    let wide = to_wide(code_page, MB_ERR_INVALID_CHARS, bytes)?;
    String::from_utf16(&wide).ok()
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
    fn oem_text_round_trips_or_is_refused_never_approximated() {
        for text in ["C:\\plain ascii", "C:\\Zoë\\é", "C:\\中文", "C:\\😀"] {
            match oem_encode(text) {
                Some(bytes) => assert_eq!(oem_decode(&bytes).as_deref(), Some(text), "{text}"),
                None => assert!(!text.is_ascii(), "ASCII always fits: {text}"),
            }
        }
        // SAFETY: no preconditions.
        let utf8 = unsafe { GetOEMCP() } == CP_UTF8;
        assert!(
            utf8 || oem_encode("C:\\😀").is_none(),
            "no OEM code page but UTF-8 has emoji"
        );
    }

    #[test]
    fn console_output_is_decoded_lossily() {
        assert_eq!(decode_output(b"plain"), "plain");
        assert!(!decode_output(&[0x82, 0xff, b'x']).is_empty());
    }
}
