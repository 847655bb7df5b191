// `import G2W` is enough to use everything the library's API returns: the container
// (`G2WFile`, `G2WDType`, `G2WMetadata`, their errors) and the tokenizer (`GPT2Tokenizer`,
// `StreamingDecoder`, `TokenizerError`).
@_exported import G2WFormat
@_exported import G2WTokenizer
