//! Stage two: trains TopK sparse coders (SAE, transcoder, skip transcoder) on batches streamed from an
//! activation cache. Not implemented yet (issue 5): the crate exists so the workspace has its final shape.
