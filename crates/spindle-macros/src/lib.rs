//! Procedural macros for spindle. Use them through the `spindle` crate:
//! `#[spindle::main]`.

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
    if let Some(a) = &f.sig.asyncness {
        return syn::Error::new_spanned(
            a,
            "#[spindle::main] functions are not async: spindle threads block",
        )
        .to_compile_error()
        .into();
    }
    if !f.sig.inputs.is_empty() {
        return syn::Error::new_spanned(
            &f.sig.inputs,
            "#[spindle::main] functions take no arguments",
        )
        .to_compile_error()
        .into();
    }
    let ItemFn {
        attrs,
        vis,
        sig,
        block,
    } = f;
    let ret = match &sig.output {
        syn::ReturnType::Default => quote!(()),
        syn::ReturnType::Type(_, t) => quote!(#t),
    };
    quote! {
        #(#attrs)*
        #vis #sig {
            ::spindle::run(move || -> #ret #block)
        }
    }
    .into()
}
