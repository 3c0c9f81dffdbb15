//! Procedural macros for spindle. Use them through the `spindle` crate:
//! `#[spindle::main]`, `#[spindle::thread(name = .., variant = ..)]`.

use proc_macro::TokenStream;
use quote::quote;
use syn::{ItemFn, parse_macro_input};

/// Runs the body of `fn main` as the main thread of a spindle runtime.
///
/// `#[spindle::main] fn main() -> R { body }` becomes
/// `fn main() -> R { ::spindle::run(move || -> R { body }) }`. The function must be
/// named `main`-like (any name works), take no arguments and not be `async`.
#[proc_macro_attribute]
pub fn main(args: TokenStream, item: TokenStream) -> TokenStream {
    if !args.is_empty() {
        return syn::Error::new(
            proc_macro2::Span::call_site(),
            "#[spindle::main] takes no arguments: write #[spindle::main]",
        )
        .to_compile_error()
        .into();
    }
    let f = parse_macro_input!(item as ItemFn);
    let ret = match body_type(&f, "#[spindle::main]") {
        Ok(r) => r,
        Err(e) => return e.to_compile_error().into(),
    };
    let ItemFn {
        attrs,
        vis,
        sig,
        block,
    } = f;
    quote! {
        #(#attrs)*
        #vis #sig {
            ::spindle::run(move || -> #ret #block)
        }
    }
    .into()
}

/// Checks that `f` can run as a spindle thread's body (not async, no arguments) and
/// returns its return type, `()` if it names none.
fn body_type(f: &ItemFn, attr: &str) -> syn::Result<proc_macro2::TokenStream> {
    if let Some(a) = &f.sig.asyncness {
        return Err(syn::Error::new_spanned(
            a,
            format!(
                "{attr} functions are not async: spindle threads block (use spindle::block_on for a future)"
            ),
        ));
    }
    if !f.sig.inputs.is_empty() {
        return Err(syn::Error::new_spanned(
            &f.sig.inputs,
            format!("{attr} functions take no arguments"),
        ));
    }
    Ok(match &f.sig.output {
        syn::ReturnType::Default => quote!(()),
        syn::ReturnType::Type(_, t) => quote!(#t),
    })
}

/// Runs a test body as the main thread of a fresh spindle runtime. See
/// `spindle::test` for the arguments.
#[proc_macro_attribute]
pub fn test(args: TokenStream, item: TokenStream) -> TokenStream {
    let f = parse_macro_input!(item as ItemFn);
    match expand_test(args.into(), f) {
        Ok(t) => t.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

/// `#[spindle::test(cores = N, hypercore = false, preemptible = true, service_cores =
/// N)]`: a `#[test]` whose body runs in `RuntimeBuilder::new()` with those settings.
fn expand_test(args: proc_macro2::TokenStream, f: ItemFn) -> syn::Result<proc_macro2::TokenStream> {
    let mut settings = Vec::new();
    let parser = syn::meta::parser(|meta| {
        let key = meta
            .path
            .get_ident()
            .map(ToString::to_string)
            .unwrap_or_default();
        match key.as_str() {
            "cores" | "service_cores" => {
                let v: syn::LitInt = meta.value()?.parse()?;
                let n: usize = v.base10_parse()?;
                let method = syn::Ident::new(&key, v.span());
                settings.push(quote!(.#method(#n)));
                Ok(())
            }
            "hypercore" | "preemptible" => {
                let v: syn::LitBool = meta.value()?.parse()?;
                let method = syn::Ident::new(&key, v.span());
                settings.push(quote!(.#method(#v)));
                Ok(())
            }
            _ => Err(meta.error(
                "#[spindle::test] takes `cores = N`, `service_cores = N`, `hypercore = true|false` and `preemptible = true|false`",
            )),
        }
    });
    syn::parse::Parser::parse2(parser, args)?;
    let ret = body_type(&f, "#[spindle::test]")?;
    let ItemFn {
        attrs,
        vis,
        sig,
        block,
    } = f;
    Ok(quote! {
        #[::core::prelude::v1::test]
        #(#attrs)*
        #vis #sig {
            ::spindle::Runtime::builder()
                #(#settings)*
                .build()
                .unwrap_or_else(|e| panic!("#[spindle::test]: the runtime did not build: {e}"))
                .block_on(move || -> #ret #block)
        }
    })
}

/// Registers a `fn(A) -> R` as a variant of a named thread in spindle's static thread
/// table. See `spindle::thread` for the arguments.
#[proc_macro_attribute]
pub fn thread(args: TokenStream, item: TokenStream) -> TokenStream {
    let f = parse_macro_input!(item as ItemFn);
    match expand_thread(args.into(), f) {
        Ok(t) => t.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

/// The features a variant name stands for: `generic` none, `avx512` `avx512f`, else
/// the name split on `+`.
fn features_of_variant(variant: &str) -> Vec<String> {
    if variant == "generic" {
        return Vec::new();
    }
    variant
        .split('+')
        .map(str::trim)
        .filter(|f| !f.is_empty())
        .map(|f| if f == "avx512" { "avx512f" } else { f }.to_string())
        .collect()
}

fn expand_thread(
    args: proc_macro2::TokenStream,
    f: ItemFn,
) -> syn::Result<proc_macro2::TokenStream> {
    let mut name: Option<syn::LitStr> = None;
    let mut variant: Option<syn::LitStr> = None;
    let mut requires: Option<syn::LitStr> = None;
    let parser = syn::meta::parser(|meta| {
        let slot = if meta.path.is_ident("name") {
            &mut name
        } else if meta.path.is_ident("variant") {
            &mut variant
        } else if meta.path.is_ident("requires") {
            &mut requires
        } else {
            return Err(meta.error(
                "unknown argument: #[spindle::thread] takes name = \"..\", variant = \"..\" \
                 and requires = \"..\"",
            ));
        };
        *slot = Some(meta.value()?.parse()?);
        Ok(())
    });
    syn::parse::Parser::parse2(parser, args)?;
    let Some(name) = name else {
        return Err(syn::Error::new(
            proc_macro2::Span::call_site(),
            "#[spindle::thread] needs a name: #[spindle::thread(name = \"dot\", variant = \"avx2\")]",
        ));
    };
    if name.value().is_empty() {
        return Err(syn::Error::new_spanned(&name, "the thread name is empty"));
    }
    let variant_s = variant
        .as_ref()
        .map_or("generic".to_string(), |v| v.value());
    if variant_s.is_empty() {
        return Err(syn::Error::new_spanned(
            &variant,
            "the variant name is empty",
        ));
    }
    if let Some(a) = &f.sig.asyncness {
        return Err(syn::Error::new_spanned(
            a,
            "#[spindle::thread] functions are not async: spindle threads block",
        ));
    }
    if !f.sig.generics.params.is_empty() {
        return Err(syn::Error::new_spanned(
            &f.sig.generics,
            "#[spindle::thread] functions are not generic: the table needs one fn(A) -> R",
        ));
    }
    let mut features: Vec<String> = match &requires {
        Some(r) => r
            .value()
            .split([',', '+'])
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        None => features_of_variant(&variant_s),
    };
    // Features the function is compiled for must be there when it runs.
    for attr in &f.attrs {
        if !attr.path().is_ident("target_feature") {
            continue;
        }
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("enable") {
                let v: syn::LitStr = meta.value()?.parse()?;
                features.extend(v.value().split(',').map(|s| s.trim().to_string()));
            }
            Ok(())
        })?;
    }
    features.sort();
    features.dedup();
    let arg_ty: syn::Type = match f.sig.inputs.len() {
        0 => syn::parse_quote!(()),
        1 => match &f.sig.inputs[0] {
            syn::FnArg::Typed(p) => (*p.ty).clone(),
            syn::FnArg::Receiver(r) => {
                return Err(syn::Error::new_spanned(
                    r,
                    "#[spindle::thread] functions are free functions, not methods",
                ));
            }
        },
        _ => {
            return Err(syn::Error::new_spanned(
                &f.sig.inputs,
                "#[spindle::thread] functions take one argument (use a tuple or struct for more)",
            ));
        }
    };
    let ret_ty: syn::Type = match &f.sig.output {
        syn::ReturnType::Default => syn::parse_quote!(()),
        syn::ReturnType::Type(_, t) => (**t).clone(),
    };
    let ident = &f.sig.ident;
    let call = if f.sig.inputs.is_empty() {
        quote!(|_: ()| #ident())
    } else {
        quote!(|a: #arg_ty| #ident(a))
    };
    let static_name = quote::format_ident!("__SPINDLE_THREAD_{}", ident.to_string().to_uppercase());
    let name_lit = name;
    let variant_lit = syn::LitStr::new(&variant_s, proc_macro2::Span::call_site());
    let feature_lits = features
        .iter()
        .map(|s| syn::LitStr::new(s, proc_macro2::Span::call_site()));
    Ok(quote! {
        #f

        #[doc(hidden)]
        const _: () = {
            /// # Safety
            ///
            /// `arg` points to an initialised argument that is moved out, and `out`
            /// to room for the result.
            #[allow(unsafe_code, unused_unsafe, clippy::undocumented_unsafe_blocks)]
            unsafe fn __spindle_call(arg: *mut u8, out: *mut u8) {
                // Spindle runs this variant only on cores whose type has its features.
                // SAFETY: spindle passes an A to move out and room for an R.
                unsafe { ::spindle::__private::call_erased::<#arg_ty, #ret_ty>(arg, out, |a| unsafe { (#call)(a) }) }
            }

            #[::spindle::__private::linkme::distributed_slice(::spindle::__private::THREADS)]
            #[linkme(crate = ::spindle::__private::linkme)]
            static #static_name: ::spindle::__private::Entry = ::spindle::__private::Entry::new(
                #name_lit,
                #variant_lit,
                &[#(#feature_lits),*],
                ::std::any::TypeId::of::<#arg_ty>,
                ::std::any::type_name::<#arg_ty>,
                ::std::any::TypeId::of::<#ret_ty>,
                ::std::any::type_name::<#ret_ty>,
                __spindle_call,
                ::std::file!(),
                ::std::line!(),
            );
        };
    })
}
