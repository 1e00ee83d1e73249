//! A kernel's uniform, declared once: [`uniform!`] makes the `#[repr(C)]` Rust struct the wrapper fills and the
//! WGSL `struct Params` the composition puts before the kernel's own source ([`super::Kernel`]), so the two can
//! never disagree. Fields are 4-byte scalars (`u32`, `i32`, `f32`) or 4-vectors of them (`[f32; 4]` is WGSL's
//! `vec4<f32>`, which must start on 16 bytes); the struct is zero-padded to the 16 bytes a uniform needs (the
//! padding is `_pad`, zeroed by `..Default::default()`).

/// Declares `struct $name` (a kernel's uniform) and `$name::wgsl()`, its WGSL text as `struct Params`.
macro_rules! uniform {
    ($(#[$meta:meta])* $vis:vis struct $name:ident { $($(#[$field_meta:meta])* $field:ident: $ty:ty),* $(,)? }) => {
        $(#[$meta])*
        #[repr(C)]
        #[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
        $vis struct $name {
            $($(#[$field_meta])* pub $field: $ty,)*
            pub _pad: [u32; $crate::kernels::uniform::padding(0 $(+ std::mem::size_of::<$ty>() / 4)*)],
        }

        impl $name {
            /// The WGSL declaration of this uniform, as `struct Params` (a kernel's binding 0).
            #[allow(dead_code)]
            pub fn wgsl() -> String {
                Self::wgsl_named("Params")
            }

            /// The WGSL declaration of this uniform as `struct $wgsl_name`.
            #[allow(dead_code)]
            pub fn wgsl_named(wgsl_name: &str) -> String {
                $crate::kernels::uniform::wgsl_struct(
                    wgsl_name,
                    &[$((stringify!($field), stringify!($ty))),*],
                    $crate::kernels::uniform::padding(0 $(+ std::mem::size_of::<$ty>() / 4)*),
                )
            }
        }
    };
}
pub(crate) use uniform;

/// A size, count or index as a kernel's `u32` parameter, checked rather than cast: a wrapped value would send
/// the kernel to the wrong elements. Every tensor is refused before planning when it exceeds the binding limit,
/// which is at most 2³¹ bytes ([`crate::gpu::MAX_BINDING_BYTES`]), so every size here is below 2²⁹ and this never
/// fires for any input; it guards the invariant (a size past u32 here is a bug in the planning checks).
#[track_caller]
pub fn u32_of(n: usize) -> u32 {
    u32::try_from(n).unwrap_or_else(|_| {
        panic!("{n} does not fit a kernel's u32 parameter: a size check before planning should have refused it")
    })
}

/// Zero `u32`s after `words` 4-byte words of fields that make the struct a multiple of 16 bytes.
pub const fn padding(words: usize) -> usize {
    (4 - words % 4) % 4
}

/// A Rust field type as WGSL spells it: `[f32; 4]` is `vec4<f32>`; `None` for one a uniform cannot hold here.
pub fn wgsl_type(rust: &str) -> Option<String> {
    let compact: String = rust.chars().filter(|c| !c.is_whitespace()).collect();
    match compact.as_str() {
        "u32" | "i32" | "f32" => Some(compact),
        "[u32;4]" | "[i32;4]" | "[f32;4]" => Some(format!("vec4<{}>", &compact[1..4])),
        _ => None,
    }
}

/// `struct <name> { name: type, ..., _pad0: u32, ... }` in WGSL. The uniform's layout rules hold by
/// construction for scalars; a 4-vector after a number of scalars that is not a multiple of 4 would be placed
/// differently by WGSL than by `#[repr(C)]`, so [`check_layout`] refuses it (every uniform is checked in tests).
pub fn wgsl_struct(name: &str, fields: &[(&str, &str)], padding: usize) -> String {
    let mut s = format!("struct {name} {{\n");
    for (name, ty) in fields {
        let ty = wgsl_type(ty).unwrap_or_else(|| ty.to_string());
        s.push_str(&format!("    {name}: {ty},\n"));
    }
    for i in 0..padding {
        s.push_str(&format!("    _pad{i}: u32,\n"));
    }
    s.push_str("}\n");
    s
}

/// Whether `fields` lie at the same offsets in WGSL's uniform layout as in `#[repr(C)]`: every type known, and
/// every 4-vector on a 16-byte boundary.
pub fn check_layout(fields: &[(&str, &str)]) -> Result<(), String> {
    let mut words = 0;
    for (name, ty) in fields {
        let wgsl =
            wgsl_type(ty).ok_or_else(|| format!("field {name}: type {ty} is not a uniform scalar or 4-vector"))?;
        if wgsl.starts_with("vec4") {
            if words % 4 != 0 {
                return Err(format!("field {name}: a 4-vector at byte {}, not on 16 bytes", 4 * words));
            }
            words += 4;
        } else {
            words += 1;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes_are_checked_not_wrapped() {
        assert_eq!(super::u32_of(4_294_967_295), u32::MAX);
        assert!(std::panic::catch_unwind(|| super::u32_of(1 << 32)).is_err(), "2^32 must not wrap to 0");
    }

    uniform! {
        struct Example {
            count: u32,
            scale: f32,
            offset: i32,
        }
    }

    uniform! {
        struct Full {
            a: u32,
            b: u32,
            c: u32,
            d: u32,
        }
    }

    #[test]
    fn the_rust_and_wgsl_layouts_are_one_declaration() {
        assert_eq!(std::mem::size_of::<Example>(), 16);
        assert_eq!(std::mem::size_of::<Full>(), 16);
        assert_eq!(
            Example::wgsl(),
            "struct Params {\n    count: u32,\n    scale: f32,\n    offset: i32,\n    _pad0: u32,\n}\n"
        );
        assert!(!Full::wgsl().contains("_pad"));
        assert!(super::check_layout(&[("a", "u32"), ("v", "[f32; 4]")]).is_err());
        assert!(
            super::check_layout(&[("a", "u32"), ("b", "u32"), ("c", "u32"), ("d", "f32"), ("v", "[f32; 4]")]).is_ok()
        );
        assert!(super::check_layout(&[("a", "u64")]).is_err());
        let e = Example { count: 7, scale: 0.5, offset: -1, ..Default::default() };
        assert_eq!(bytemuck::cast::<Example, [u32; 4]>(e), [7, 0.5f32.to_bits(), (-1i32) as u32, 0]);
    }
}
