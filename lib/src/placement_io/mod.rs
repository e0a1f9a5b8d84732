//! The I/O side of placement: everything [`crate::placement`] decides from, read from a
//! real repository. `placement` itself stays pure; this module reads the git-annex branch
//! (through [`crate::branch::repo`]), the git config, the work tree and `.gitattributes`
//! (through `git check-attr`), and keeps the repository size cache.
//!
//! * [`facts`]: [`crate::placement::Facts`] from the branch and git config, and names of
//!   repositories;
//! * [`sizes`]: repository sizes from the location logs, cached by branch commit and
//!   updated incrementally;
//! * [`keys`]: per-key facts ([`crate::placement::KeyFacts`]) read lazily from the branch;
//! * [`attrs`]: `annex.numcopies` / `annex.mincopies` from `.gitattributes` via
//!   `git check-attr`;
//! * [`worktree`]: annexed files and their keys.
//!
//! ```no_run
//! use annexgate::placement_io::Placement;
//! let p = Placement::open(".", None).unwrap();
//! let view = p.repo.view().unwrap();
//! let ctx = p.context(&view).unwrap();
//! let engine = annexgate::placement::Engine::new(ctx.loaded.facts.clone());
//! let keys = ctx.key_reader().unwrap();
//! let k = keys.key(annexgate::Key::from_str("SHA256E-s3--abc.txt").unwrap()).unwrap();
//! for u in &ctx.repositories {
//!     let _ = engine.want_get(u, &k, None);
//! }
//! assert!(keys.take_error().is_none());
//! ```

pub mod attrs;
pub mod facts;
pub mod keys;
pub mod sizes;
pub mod worktree;

use std::path::Path;

use crate::branch::repo::{BranchView, GitConfig, GitRepo, RepoError};
pub use facts::{FactsError, Loaded, RepoNames};
pub use keys::{BranchKey, KeyFactsError, KeyReader, LocalObjects, LocationIndex};
pub use sizes::{RepoSizes, SizeTally, SizesError, SizesSource};

/// A repository opened for placement questions.
#[derive(Debug)]
pub struct Placement {
    pub repo: GitRepo,
    pub config: GitConfig,
    /// Whether to compute repository sizes (`None`: when a decision may need them).
    pub want_sizes: Option<bool>,
}

/// Facts loaded from one view, ready for questions.
pub struct Context<'v, 'r> {
    pub view: &'v BranchView<'r>,
    pub loaded: Loaded,
    /// The repositories asked about: those with an expression, minus dead ones.
    pub repositories: Vec<crate::types::Uuid>,
    repo: &'r Placement,
}

impl Placement {
    /// Open the repository containing `path` (a work tree, `.git`, or a bare repository).
    pub fn open(path: impl AsRef<Path>, want_sizes: Option<bool>) -> Result<Placement, RepoError> {
        let repo = GitRepo::discover(path)?;
        let config = repo.config()?;
        Ok(Placement {
            repo,
            config,
            want_sizes,
        })
    }

    /// Load the facts of `view` (a view of this repository's branch).
    pub fn context<'v, 'r>(
        &'r self,
        view: &'v BranchView<'r>,
    ) -> Result<Context<'v, 'r>, FactsError> {
        let loaded = facts::load(&self.repo, view, &self.config, self.want_sizes)?;
        let repositories = facts::configured_repositories(&loaded);
        Ok(Context {
            view,
            loaded,
            repositories,
            repo: self,
        })
    }
}

impl std::fmt::Debug for Context<'_, '_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("tip", &self.view.tip())
            .field("repositories", &self.repositories)
            .finish()
    }
}

impl<'v, 'r> Context<'v, 'r> {
    /// Every key's locations in one walk (see [`LocationIndex`]).
    pub fn location_index(&self) -> Result<LocationIndex, RepoError> {
        LocationIndex::load(
            &self.repo.repo,
            self.view,
            self.loaded.hash,
            worktree::walk_threads(),
        )
    }

    /// A reader of per-key facts. The local repository's `present` is answered from its
    /// object files when it has a UUID.
    pub fn key_reader(&self) -> Result<KeyReader<'v, 'r>, RepoError> {
        let p = self.repo;
        let annex_dir = p.repo.annex_dir();
        let local = self
            .loaded
            .facts
            .local
            .as_ref()
            .map(|_| LocalObjects::new(&annex_dir, &p.config));
        Ok(KeyReader::new(
            self.view.reader()?,
            self.loaded.hash,
            annex_dir,
            local,
            p.repo.work_tree().map(Path::to_path_buf),
        ))
    }
}

#[cfg(test)]
mod tests;
