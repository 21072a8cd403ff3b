//! The `Run` key leaf on Windows: one string value under `HKEY_CURRENT_USER\<key>`, read, set and deleted
//! with the path-taking registry calls (`RegGetValueW`, `RegSetKeyValueW`, `RegDeleteKeyValueW`), so no
//! key handle is ever held. Same signatures as `other.rs`.

use windows_sys::Win32::Foundation::{ERROR_FILE_NOT_FOUND, ERROR_MORE_DATA, ERROR_SUCCESS};
use windows_sys::Win32::System::Registry::{
    HKEY_CURRENT_USER, REG_SZ, RRF_NOEXPAND, RRF_RT_REG_EXPAND_SZ, RRF_RT_REG_SZ, RegDeleteKeyValueW,
    RegGetValueW, RegSetKeyValueW,
};

use super::RunKeyError;

fn wide(s: &str) -> Vec<u16> {
    s.encode_utf16().chain(std::iter::once(0)).collect()
}

fn os(what: &'static str, key: &str, name: &str, code: u32) -> RunKeyError {
    RunKeyError::Os {
        what,
        key: key.to_owned(),
        name: name.to_owned(),
        code,
    }
}

pub(crate) fn read(key: &str, name: &str) -> Result<Option<String>, RunKeyError> {
    let (wkey, wname) = (wide(key), wide(name));
    // REG_SZ or REG_EXPAND_SZ, as stored (not expanded: the comparison is with what we would write).
    let flags = RRF_RT_REG_SZ | RRF_RT_REG_EXPAND_SZ | RRF_NOEXPAND;
    let mut bytes: u32 = 0;
    // SAFETY: both strings are NUL-terminated and outlive the call; a null buffer with a size pointer
    // asks for the size in bytes.
    let code = unsafe {
        RegGetValueW(
            HKEY_CURRENT_USER,
            wkey.as_ptr(),
            wname.as_ptr(),
            flags,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            &mut bytes,
        )
    };
    match code {
        ERROR_SUCCESS | ERROR_MORE_DATA => {}
        ERROR_FILE_NOT_FOUND => return Ok(None),
        13 /* ERROR_INVALID_DATA: another type */ | 1630 /* ERROR_UNSUPPORTED_TYPE */ => {
            return Err(RunKeyError::NotText {
                key: key.to_owned(),
                name: name.to_owned(),
            });
        }
        code => return Err(os("read", key, name, code)),
    }
    // The value may grow between the calls: retry with the size the last call reported.
    loop {
        let mut buf = vec![0u16; (bytes as usize).div_ceil(2) + 1];
        let mut size = u32::try_from(buf.len() * 2).unwrap_or(u32::MAX);
        // SAFETY: `buf` holds `size` bytes; the strings are NUL-terminated and outlive the call.
        let code = unsafe {
            RegGetValueW(
                HKEY_CURRENT_USER,
                wkey.as_ptr(),
                wname.as_ptr(),
                flags,
                std::ptr::null_mut(),
                buf.as_mut_ptr().cast(),
                &mut size,
            )
        };
        match code {
            ERROR_SUCCESS => {
                buf.truncate(size as usize / 2);
                while buf.last() == Some(&0) {
                    buf.pop();
                }
                return String::from_utf16(&buf)
                    .map(Some)
                    .map_err(|_| RunKeyError::NotText {
                        key: key.to_owned(),
                        name: name.to_owned(),
                    });
            }
            ERROR_MORE_DATA => bytes = size,
            ERROR_FILE_NOT_FOUND => return Ok(None),
            code => return Err(os("read", key, name, code)),
        }
    }
}

pub(crate) fn set(key: &str, name: &str, command: &str) -> Result<(), RunKeyError> {
    let (wkey, wname, data) = (wide(key), wide(name), wide(command));
    let bytes = u32::try_from(data.len() * 2).map_err(|_| os("set", key, name, 87))?;
    // SAFETY: the strings are NUL-terminated and outlive the call; `data` is `bytes` bytes long,
    // including its terminating NUL, as REG_SZ requires. The key is created when missing.
    let code = unsafe {
        RegSetKeyValueW(
            HKEY_CURRENT_USER,
            wkey.as_ptr(),
            wname.as_ptr(),
            REG_SZ,
            data.as_ptr().cast(),
            bytes,
        )
    };
    match code {
        ERROR_SUCCESS => Ok(()),
        code => Err(os("set", key, name, code)),
    }
}

pub(crate) fn delete(key: &str, name: &str) -> Result<(), RunKeyError> {
    let (wkey, wname) = (wide(key), wide(name));
    // SAFETY: both strings are NUL-terminated and outlive the call.
    let code = unsafe { RegDeleteKeyValueW(HKEY_CURRENT_USER, wkey.as_ptr(), wname.as_ptr()) };
    match code {
        ERROR_SUCCESS | ERROR_FILE_NOT_FOUND => Ok(()),
        code => Err(os("delete", key, name, code)),
    }
}
